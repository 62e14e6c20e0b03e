"""carryover: stateful recurrent models served per user, with state kept in DynamoDB."""
