"""The stream way in: Kinesis records (`records`) applied in batches across users (`carryover.core.batch`), the
records that cannot be applied sent to the failure queue and each user's answers published (`sinks`), by a
Lambda function behind an event source mapping (`lambda_handler`)."""
