"""The row log, deployed: the table's change stream (DynamoDB Streams, new images) archived to S3 by partition
(`archiver`), compacted daily (`compaction`: each write once, deleted users' rows gone, rows past the retention
dropped), and read by partition (`layout.S3Log`) by the bulk jobs (`carryover.bulk`)."""
