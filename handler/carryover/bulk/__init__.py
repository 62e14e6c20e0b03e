"""The bulk job's way in: every user of the row log, in batches, through the bootstrap (`worker`); deployed, each
child of a Step Functions Distributed Map runs a batch of log partitions (`lambda_handler`), locally one process
runs every user (`infra/local/bulk.py`), on the same code."""
