"""SQS consumers on Powertools' batch processing: a partial batch response, failures logged by the consumer.

Only the failed messages return to the queue (`batchItemFailures`, ReportBatchItemFailures on the event
source mapping). A batch whose every message failed is still answered that way, not raised: each message
goes back on its own and the invocation does not count as an error.

Message bodies are never logged. Powertools logs a failed record itself (`<type>:<text>` of the exception
at DEBUG, the traceback at WARNING when given a logger); here each consumer logs its failures alone, with
the message id and the words it chose, so no library line can carry a body or a part of it.

Importing Powertools' batch utility costs some 30% of a bare `import boto3` (it loads every event data
class): handlers import this module on their first queue event, so scheduled invocations never pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.base import FailureResponse
from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

# Logs one failed message; called with the exception the record handler raised.
FailureLog = Callable[[SQSRecord, BaseException], None]


class QuietSqsBatch(BatchProcessor):
    """Powertools' SQS batch processor whose failure bookkeeping logs nothing of its own."""

    def __init__(self, log_failure: FailureLog) -> None:
        super().__init__(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        self._log_failure = log_failure

    def failure_handler(self, record: Any, exception: ExceptionInfo) -> FailureResponse:
        # What BatchProcessor.failure_handler keeps, without its log line of the exception's text.
        error = exception[1]
        assert error is not None  # always called from an except block
        self._log_failure(record, error)
        self.exceptions.append(exception)
        self.fail_messages.append(record)
        return ("fail", type(error).__name__, record)


def consume(event: dict[str, Any], handle: Callable[[SQSRecord], object], log_failure: FailureLog,
            context: LambdaContext) -> dict[str, Any]:
    """Each record through `handle(record=...)`; the ids of those that raised come back for SQS to retry."""
    return dict(process_partial_response(event=event, record_handler=handle, processor=QuietSqsBatch(log_failure),
                                         context=context))
