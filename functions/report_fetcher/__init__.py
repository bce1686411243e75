"""Report pull duty: plan jobs on a schedule, fetch reports from SP-API, stream them into S3."""
