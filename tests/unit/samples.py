"""The synthetic records of ``mimecast-api.md`` §12 and ``mta-rejections.md`` §2.3, verbatim,
and one-line copies of them.

``ATTACHMENT_PAGE``, ``IMPERSONATION`` and ``URL_CLICK`` / ``URL_ENTRY_SCAN`` are the §12 texts
exactly as the document prints them, line breaks and indentation included; ``REJECTION`` is the
synthetic rejection of ``mta-rejections.md`` §2.3, which that document prints on one line. The attachment
records are cut out of their page the way the client does it (a :class:`msgspec.Raw` per
record), so they are the bytes Mimecast would send. The ``*_LINE`` copies are the same JSON
with the whitespace between tokens removed (what the API sends in practice); the golden files
are written from those.
"""

from __future__ import annotations

import msgspec

ATTACHMENT_PAGE = rb"""{"meta":{"status":200,"pagination":{"pageSize":2,"totalCount":17,"next":"eNpTOKEN-ap-2"}},
 "data":[{"attachmentLogs":[
  {"senderAddress":"billing@invoices-example.net","recipientAddress":"a.khan@example.com",
   "fileName":"Remittance_8841.xlsm","fileType":"application/vnd.ms-excel.sheet.macroEnabled.12",
   "result":"malicious","actionTriggered":"none","date":"2025-03-04T09:12:45+0000",
   "details":"Malicious\r\nTime taken: 0 hrs, 0 min, 6 sec","route":"inbound",
   "messageId":"<a91f3c.2210@mail.invoices-example.net>","subject":"Remittance advice",
   "fileHash":"3b1f0c9d5e7a4b2c8d6e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e",
   "definition":"Default Inbound Attachment Protect Definition"},
  {"senderAddress":"<>","recipientAddress":"m.ortiz@example.com","fileName":"agenda.pdf",
   "fileType":"application/pdf","result":"safe","actionTriggered":"user release, none",
   "date":"2025-03-04T09:10:02+0000","details":"Safe\r\nTime taken: 0 hrs, 0 min, 3 sec",
   "route":"inbound","messageId":"<20250304.77@lists.example.org>","subject":"Q2 agenda",
   "fileHash":"9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d",
   "definition":"Inbound - Safe file with On-Demand Sandbox"}]}],
 "fail":[]}
"""

IMPERSONATION = rb"""{"id":"MTOKEN:eNqrSYNTHETIC0001","senderAddress":"ceo.office@examp1e-corp.com",
 "recipientAddress":"finance@example.com","subject":"Urgent wire today",
 "definition":"IP - 2 hits (Hold for Review / User Hold)","hits":2,
 "identifiers":["similar_internal_domain","internal_user_name"],"action":"hold",
 "taggedExternal":true,"taggedMalicious":true,"senderIpAddress":"203.0.113.45",
 "eventTime":"2025-03-04T08:55:19+0000",
 "impersonationResults":[
   {"impersonationDomainSource":"similar_internal_domain","similarDomain":"example.com",
    "stringSimilarToDomain":"examp1e-corp.com","checkerResult":"hit"},
   {"impersonationDomainSource":"internal_user_name","similarDomain":"Dana Lee <dana.lee@example.com>",
    "stringSimilarToDomain":"Dana Lee","checkerResult":"hit"}],
 "messageId":"<CAF0synthetic123@mail.examp1e-corp.com>"}"""

URL_CLICK = rb"""{"userEmailAddress":"r.singh@example.com","fromUserEmailAddress":"support@parcel-notify.example.net",
 "url":"https://parcel-notify.example.net/track/9931","ttpDefinition":"Default Inbound URL Protect Definition",
 "subject":"Delivery attempt failed","action":"warn","adminOverride":"N/A","userOverride":"None",
 "scanResult":"malicious","category":"Phishing & Fraud","sendingIp":"198.51.100.23",
 "userAwarenessAction":"N/A","date":"2025-03-04T10:01:33+0000","actions":"Block","route":"inbound",
 "creationMethod":"User Click","emailPartsDescription":["Body"],
 "messageId":"<77c2e1@parcel-notify.example.net>",
 "tagMap":{"UrlReputationScan":{"Status":["CustomerAll","VerdictBlock"],"Type":["Phishing"],
   "Url":["https://parcel-notify.example.net/track/9931"],
   "UrlBlock":["ORIGINAL:https://parcel-notify.example.net/track/9931 (Blocked as PHISHING)"]}}}"""

URL_ENTRY_SCAN = rb"""{"userEmailAddress":"ops@example.com","fromUserEmailAddress":"it@example.com",
 "url":"https://downloads.example.org/tool.exe","ttpDefinition":"","subject":"Tool",
 "action":"warn","adminOverride":"N/A","userOverride":"None","scanResult":"malicious",
 "category":"Dangerous file extension","sendingIp":"Internal IP","userAwarenessAction":"N/A",
 "date":"2025-03-04T10:05:00+0000","actions":"None","route":"internal","creationMethod":"Entry Scan",
 "emailPartsDescription":["Attachment"],"messageId":"<int-55@example.com>"}"""


REJECTION = rb"""{"id":"eNpVT1tPwjAU_i99hSW7dh1RE5iK0SGwOQ28","created":"2026-11-30T18:56:08+0000","description":"Invalid Recipient Address","info":"Invalid Recipient","type":14012,"fromAddress":"probe17@203-0-113-5.example","toAddress":"j.smith@demo.example.com","toAddressPreCheck":"j.smith@demo.example.com","toAddressPostCheck":"","ipAddress":"203.0.113.5","remoteName":"mx.203-0-113-5.example","remoteEhlo":"mx.203-0-113-5.example","manageRecipient":"false","spamScore":0,"detectionLevel":"not_initiated"}"""


class _AttachmentData(msgspec.Struct):
    attachmentLogs: list[msgspec.Raw]


class _AttachmentPage(msgspec.Struct):
    data: list[_AttachmentData]


def attachment_records() -> list[bytes]:
    """The two records of the §12.2 page, as the exact bytes they occupy in it."""
    page = msgspec.json.decode(ATTACHMENT_PAGE, type=_AttachmentPage)
    return [bytes(raw) for raw in page.data[0].attachmentLogs]


ATTACHMENT_MALICIOUS, ATTACHMENT_SAFE = attachment_records()

# The same records on one line each: the whitespace between tokens removed, nothing else.
ATTACHMENT_LINE = rb'{"senderAddress":"billing@invoices-example.net","recipientAddress":"a.khan@example.com","fileName":"Remittance_8841.xlsm","fileType":"application/vnd.ms-excel.sheet.macroEnabled.12","result":"malicious","actionTriggered":"none","date":"2025-03-04T09:12:45+0000","details":"Malicious\r\nTime taken: 0 hrs, 0 min, 6 sec","route":"inbound","messageId":"<a91f3c.2210@mail.invoices-example.net>","subject":"Remittance advice","fileHash":"3b1f0c9d5e7a4b2c8d6e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e","definition":"Default Inbound Attachment Protect Definition"}'
IMPERSONATION_LINE = rb'{"id":"MTOKEN:eNqrSYNTHETIC0001","senderAddress":"ceo.office@examp1e-corp.com","recipientAddress":"finance@example.com","subject":"Urgent wire today","definition":"IP - 2 hits (Hold for Review / User Hold)","hits":2,"identifiers":["similar_internal_domain","internal_user_name"],"action":"hold","taggedExternal":true,"taggedMalicious":true,"senderIpAddress":"203.0.113.45","eventTime":"2025-03-04T08:55:19+0000","impersonationResults":[{"impersonationDomainSource":"similar_internal_domain","similarDomain":"example.com","stringSimilarToDomain":"examp1e-corp.com","checkerResult":"hit"},{"impersonationDomainSource":"internal_user_name","similarDomain":"Dana Lee <dana.lee@example.com>","stringSimilarToDomain":"Dana Lee","checkerResult":"hit"}],"messageId":"<CAF0synthetic123@mail.examp1e-corp.com>"}'
URL_CLICK_LINE = rb'{"userEmailAddress":"r.singh@example.com","fromUserEmailAddress":"support@parcel-notify.example.net","url":"https://parcel-notify.example.net/track/9931","ttpDefinition":"Default Inbound URL Protect Definition","subject":"Delivery attempt failed","action":"warn","adminOverride":"N/A","userOverride":"None","scanResult":"malicious","category":"Phishing & Fraud","sendingIp":"198.51.100.23","userAwarenessAction":"N/A","date":"2025-03-04T10:01:33+0000","actions":"Block","route":"inbound","creationMethod":"User Click","emailPartsDescription":["Body"],"messageId":"<77c2e1@parcel-notify.example.net>","tagMap":{"UrlReputationScan":{"Status":["CustomerAll","VerdictBlock"],"Type":["Phishing"],"Url":["https://parcel-notify.example.net/track/9931"],"UrlBlock":["ORIGINAL:https://parcel-notify.example.net/track/9931 (Blocked as PHISHING)"]}}}'
URL_ENTRY_SCAN_LINE = rb'{"userEmailAddress":"ops@example.com","fromUserEmailAddress":"it@example.com","url":"https://downloads.example.org/tool.exe","ttpDefinition":"","subject":"Tool","action":"warn","adminOverride":"N/A","userOverride":"None","scanResult":"malicious","category":"Dangerous file extension","sendingIp":"Internal IP","userAwarenessAction":"N/A","date":"2025-03-04T10:05:00+0000","actions":"None","route":"internal","creationMethod":"Entry Scan","emailPartsDescription":["Attachment"],"messageId":"<int-55@example.com>"}'
# Already one line as the document prints it.
REJECTION_LINE = REJECTION
