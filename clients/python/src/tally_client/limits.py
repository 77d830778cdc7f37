"""The gateway protocol's limits as the client applies them, units last, each with its
reason (gateway/client/src/limits.rs and docs/protocol.md are the source; the node refuses
anything over them, and this client refuses it first, before sending).
"""

#: Bytes of the gateway header at the start of every request and reply payload.
HEADER_BYTES = 64
#: Events in one create request: one engine batch (8,189 records, just under 1 MiB), which
#: is also what one Raft entry holds.
REQUEST_EVENTS_MAX = 8189
#: Ids in one lookup request: as many as events in a create request.
LOOKUP_IDS_MAX = 8189
#: Entries one statement request may ask for.
STATEMENT_ENTRIES_MAX = 8189
#: Records one query request may ask for (its ``limit``), and so one query reply carries.
QUERY_RECORDS_MAX = 8189
#: Exceptions one settlement-cycle request may ask for (a full page: 336 + 8,189 * 192 bytes,
#: about 1.6 MB).
CYCLE_EXCEPTIONS_MAX = 8189
#: A credential is 16..=256 bytes: 128 bits resist guessing; 256 leave room for any token
#: format without letting a stranger make the node hash megabytes.
CREDENTIAL_BYTES_MIN = 16
CREDENTIAL_BYTES_MAX = 256
#: Bytes of a refusal's message and of a leader address in it.
MESSAGE_BYTES_MAX = 1024
ADDRESS_BYTES_MAX = 256
#: Members named in a node-state reply or an admin request.
MEMBERS_MAX = 64
#: A statement entry: timestamp, kind, reserved, four balances, the event's record.
STATEMENT_ENTRY_BYTES = 8 + 8 + 64 + 128
#: The largest reply payload accepted (a full statement, about 1.7 MB); anything larger
#: closes the connection before it is read.
REPLY_PAYLOAD_BYTES_MAX = 2 * 1024 * 1024
#: Ids in one prove request; hashes in one proof; bytes of a leaf and of a signed note.
PROVE_IDS_MAX = 256
PROOF_HASHES_MAX = 65
LEAF_BYTES = 152
NOTE_BYTES_MAX = 1024
#: Reads in one access-trail reply, and bytes of one read's leaf (its header and 24 bytes
#: per account, at most four accounts per id of a full lookup).
ACCESS_TRAIL_READS_MAX = 1024
ACCESS_LEAF_BYTES_MAX = 76 + 4 * 8192 * 24

assert HEADER_BYTES + 16 + STATEMENT_ENTRIES_MAX * STATEMENT_ENTRY_BYTES <= REPLY_PAYLOAD_BYTES_MAX
assert HEADER_BYTES + LOOKUP_IDS_MAX * 128 <= REPLY_PAYLOAD_BYTES_MAX
assert HEADER_BYTES + 336 + CYCLE_EXCEPTIONS_MAX * 192 <= REPLY_PAYLOAD_BYTES_MAX
assert HEADER_BYTES + 16 + QUERY_RECORDS_MAX * (128 + 64) <= REPLY_PAYLOAD_BYTES_MAX
