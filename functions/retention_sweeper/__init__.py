"""Retention duty: purges what a REVOKED or DELETION_REQUESTED connection left, once its purge date came."""
