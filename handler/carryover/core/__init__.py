"""The request path, knowing no transport: apply a user's rows once (`service`), from where their state
starts (`start`), recognising repeats (`idempotency`), through conditional writes retried on conflict
(`writes`). It returns domain results (`results`) and raises `carryover.errors`; a way in (HTTP, a stream)
renders them."""
