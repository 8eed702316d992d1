"""S3's errors: a code clients match on, its HTTP status, and the XML body S3 answers.

Raise ``S3Error("NoSuchKey")``; the status and default message come from ``CODES``.
"""

from __future__ import annotations

import json
from xml.sax.saxutils import escape

# code: (status, default message), as AWS documents them
CODES = {
    "AccessDenied": (403, "Access Denied"),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed."),
    "AuthorizationQueryParametersError": (400, "The presigned query parameters are malformed."),
    "BadDigest": (400, "The Content-MD5 you specified did not match what we received."),
    "BucketAlreadyExists": (409, "The requested bucket name is not available. Select a "
                                 "different name and try again."),
    "BucketAlreadyOwnedByYou": (409, "Your previous request to create the named bucket "
                                     "succeeded and you already own it."),
    "BucketNotEmpty": (409, "The bucket you tried to delete is not empty."),
    "EntityTooSmall": (400, "Your proposed upload is smaller than the minimum allowed object "
                            "size."),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed object size."),
    "IncompleteBody": (400, "You did not provide the number of bytes specified by the "
                            "Content-Length HTTP header."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "InvalidAccessKeyId": (403, "The AWS access key ID you provided does not exist in our "
                                "records."),
    "InvalidArgument": (400, "Invalid Argument"),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidDigest": (400, "The Content-MD5 you specified is not valid."),
    "InvalidLocationConstraint": (400, "The specified location constraint is not valid."),
    "InvalidPart": (400, "One or more of the specified parts could not be found. The part "
                         "may not have been uploaded, or the specified entity tag may not "
                         "match the part's entity tag."),
    "InvalidPartOrder": (400, "The list of parts was not in ascending order. The parts list "
                              "must be specified in order by part number."),
    "InvalidPartNumber": (416, "The requested partnumber is not satisfiable"),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InvalidRequest": (400, "Invalid Request"),
    "InvalidURI": (400, "Couldn't parse the specified URI."),
    "KeyTooLongError": (400, "Your key is too long."),
    "MalformedXML": (400, "The XML you provided was not well-formed or did not validate "
                          "against our published schema."),
    "MetadataTooLarge": (400, "Your metadata headers exceed the maximum allowed metadata "
                              "size."),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "NoSuchBucket": (404, "The specified bucket does not exist."),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchUpload": (404, "The specified multipart upload does not exist. The upload ID may be "
                          "invalid, or the upload may have been aborted or completed."),
    "NotImplemented": (501, "A header or query you provided implies functionality that is "
                            "not implemented."),
    "PreconditionFailed": (412, "At least one of the preconditions you specified did not "
                                "hold."),
    "RequestTimeTooSkewed": (403, "The difference between the request time and the current "
                                  "time is too large."),
    "ServiceUnavailable": (503, "Please reduce your request rate."),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the "
                                   "signature you provided. Check your key and signing "
                                   "method."),
    "XAmzContentSHA256Mismatch": (400, "The provided 'x-amz-content-sha256' header does not "
                                       "match what was computed."),
}


class S3Error(Exception):
    def __init__(self, code: str, message: str | None = None, **details: str):
        status, default = CODES[code]
        super().__init__(message or default)
        self.code = code
        self.status = status
        self.message = message or default
        self.details = details  # extra elements of the body (BucketName, Key...)

    def xml(self, resource: str, request_id: str) -> bytes:
        extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in self.details.items())
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.code}</Code>'
                f"<Message>{escape(self.message)}</Message>{extra}"
                f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId>"
                "</Error>").encode()


def not_implemented(what: str) -> S3Error:
    return S3Error("NotImplemented", f"{what} is not implemented by soko's S3 API yet.")


SWIFT_STATUS_CODES = {401: "AccessDenied", 403: "AccessDenied", 408: "IncompleteBody",
                      411: "MissingContentLength", 412: "PreconditionFailed",
                      413: "EntityTooLarge", 416: "InvalidRange", 422: "BadDigest",
                      499: "IncompleteBody"}


def from_swift(status: int, body: bytes, not_found: str, **details: str) -> S3Error:
    """The S3 error for a Swift answer that failed (``not_found``: what a 404 means here)."""
    if status == 404:
        return S3Error(not_found, **details)
    if status in SWIFT_STATUS_CODES:
        return S3Error(SWIFT_STATUS_CODES[status], **details)
    if status == 400:
        message = swift_message(body)
        code = "MetadataTooLarge" if "etadata" in message else "InvalidArgument"
        return S3Error(code, message or None, **details)
    return S3Error("ServiceUnavailable", swift_message(body) or None)


def swift_message(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["message"])[:500]
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace").strip()[:500]
