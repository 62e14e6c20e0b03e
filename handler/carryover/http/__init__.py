"""The HTTP way in: API Gateway HTTP API events (payload 2.0) to the service and its answers back as JSON.
`routes` declares every route once; the Lambda handler (`lambda_handler`), the OpenAPI document (`openapi`)
and the template's routes (checked by the tests) follow from it; `errors` maps every error to its status."""
