"""The data-subject-request duty: the `/admin/sellers/{seller_id}...` routes (AWS_IAM authorized)."""
