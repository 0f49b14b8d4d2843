"""The root of every exception pixhook raises on purpose, and the whole tree under it.

This is the one drawing of the tree; other modules describe their own classes and point here.
The PixVerse and storage branches are drawn in more detail (error codes, causes) in
:mod:`service.pixverse.errors` and :mod:`service.store.errors`::

    ServiceError
    ├── PixVerseError                  (service.pixverse.errors) the PixVerse contract and client
    │   ├── InvalidRequest             bad input caught locally, before any network call
    │   │                              (also a ValueError)
    │   ├── SignatureError             a webhook signature missing, malformed or wrong
    │   │   └── StaleTimestampError    its timestamp is outside the replay window
    │   ├── MalformedPayloadError      a webhook body that is not a flat JSON object
    │   ├── TransportError             timeout / connection failure (ambiguous for a POST)
    │   └── APIError                   PixVerse answered with a non-zero ErrCode or HTTP error
    │       └── AuthenticationError, ValidationError, NotFoundError, ModerationError,
    │           InsufficientCreditsError, QuotaExceededError, ConcurrencyLimitError,
    │           RateLimitedError, OverloadedError, UploadError, UnknownAPIError
    ├── StorageError                   (service.store.errors) a database operation failed
    │   ├── ConstraintError            a write broke a UNIQUE or FOREIGN KEY constraint
    │   │   └── IdempotencyKeyReusedError  an idempotency key already made another request's job
    │   ├── JobNotFoundError           no job has that id (also a LookupError)
    │   ├── JobStateError              a job is not in a state that allows the operation
    │   │   └── JobCancelledError      the job was cancelled: a submitter's write was refused
    │   ├── TaskNotFoundError          no task has that id (also a LookupError)
    │   ├── LeaseLostError             a task's lease passed to another run
    │   ├── TaskStateError             a task is not in a state that allows the operation
    │   ├── SchemaError                the database was migrated by a newer pixhook
    │   ├── StoreClosedError           the store is not open (yet, or any more)
    │   └── UnsupportedDatabaseError   a database URL pixhook cannot use (also a ValueError)
    ├── HandlerError                   (service.handler_api) how a handler's task run ends
    │   ├── Retry                      run again after ``after`` seconds
    │   ├── PermanentError             give up now: the task is dead
    │   │   └── ChatRefusedError       (handlers.chat) Discord, Teams or Telegram said no (4xx)
    │   └── TransientError             failed for now: retried with backoff
    │       ├── DownloadError          (handlers.download) 429/5xx without Retry-After, a
    │       │                          truncated body, a host that does not resolve
    │       ├── SlackDeliveryError     (handlers.slack) Slack unreachable or answering 5xx
    │       ├── ChatDeliveryError      (handlers.chat) a chat service unreachable or 5xx
    │       ├── AppriseDeliveryError   (handlers.apprise_notify) Apprise could not notify
    │       ├── BrokerUnavailableError (handlers.brokers) a sink did not acknowledge
    │       └── DeliveryError          (handlers.forward) the callback_url did not take the event
    ├── BodyError                      (service.bodies) a request body not read whole
    │   ├── BodyTooLargeError          over the endpoint's size cap
    │   ├── BodyTimeoutError           not all there within PIXHOOK_BODY_TIMEOUT
    │   └── ClientDisconnectedError    the client hung up mid-body
    ├── InputError                     (service.api_input) a request /api does not take:
    │                                  its status (413, 422...) and the field at fault
    ├── SettingsError                  (service.settings) a setting that cannot be used
    │   └── HandlerConfigError         (service.registry) a handler unknown, failing to load,
    │                                  or with an unusable option
    └── UnknownStatusError             (service.lifecycle) a PixVerse status code pixhook does
                                       not know (also a ValueError)

Outside the tree on purpose: the simulator's ``Reject`` (``service.simulator.calls``) is
PixVerse's answer to send back, not a pixhook failure.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class for pixhook's own errors."""
