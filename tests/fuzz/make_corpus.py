#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer harnesses (tests/fuzz/corpus/<harness>/seed-*).

Small valid (and a few nearly valid) inputs for each decoder, so that fuzzing starts from the
formats' interesting corners instead of from nothing. Deterministic: run it again and nothing
changes. Inputs that fuzzing found (finding-*) are kept as they are; only seed-* files are
rewritten. Needs nothing but Python 3.

    python3 tests/fuzz/make_corpus.py
"""

import gzip
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
REPO = os.path.dirname(os.path.dirname(HERE))


# ---- protobuf wire encoding (field numbers: proto/opentelemetry/proto/*) ----

def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def tag(field, wire_type):
    return varint(field << 3 | wire_type)


def ln(field, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return tag(field, 2) + varint(len(payload)) + payload


def vi(field, v):
    return tag(field, 0) + varint(v)


def f64(field, v):
    return tag(field, 1) + struct.pack("<Q", v)


def f32(field, v):
    return tag(field, 5) + struct.pack("<I", v)


def dbl(field, v):
    return tag(field, 1) + struct.pack("<d", v)


def any_string(s):
    return ln(1, s)


def kv(key, any_value):
    return ln(1, key) + ln(2, any_value)


def span(n, trace=None, span_id=None, extra=b""):
    trace = trace if trace is not None else bytes([1 + n] * 16)
    span_id = span_id if span_id is not None else bytes([0x10 + n] * 8)
    return (ln(1, trace) + ln(2, span_id) + ln(4, bytes([0x20 + n] * 8)) + f32(16, 0x101) +
            ln(5, "GET /items/{id}") + vi(6, 2) + f64(7, 1700000000000000000 + n) +
            f64(8, 1700000000000100000 + n) +
            ln(9, kv("http.status_code", vi(3, 200))) +
            ln(9, kv("db.statement", any_string("SELECT * FROM t WHERE id = 'x'"))) +
            ln(11, f64(1, 1700000000000050000) + ln(2, "event") +
               ln(3, kv("ok", vi(2, 1)))) +
            ln(13, ln(1, bytes([9] * 16)) + ln(2, bytes([8] * 8)) + ln(3, "k=v") + f32(6, 1)) +
            ln(15, ln(2, "fine") + vi(3, 1)) + extra)


def scope_spans(spans, name="scope"):
    return ln(1, ln(1, name) + ln(2, "1.0")) + b"".join(ln(2, s) for s in spans) + \
        ln(3, "https://opentelemetry.io/schemas/1.21.0")


def resource_spans(scopes, service="svc"):
    resource = ln(1, kv("service.name", any_string(service))) + vi(2, 0)
    return ln(1, resource) + b"".join(ln(2, s) for s in scopes) + ln(3, "https://example.com/s")


def request(resources):
    return b"".join(ln(1, r) for r in resources)


def nested_array(depth):
    """An AnyValue nested `depth` times through array values."""
    inner = any_string("leaf")
    for _ in range(depth):
        inner = ln(5, ln(1, inner))
    return inner


def nested_kvlist(depth):
    """An AnyValue nested through kvlist values: AnyValue > KeyValueList > KeyValue > AnyValue."""
    inner = vi(3, 7)
    for _ in range(depth):
        inner = ln(6, ln(1, kv("k", inner)))
    return inner


SMALL = request([resource_spans([scope_spans([span(0), span(1)])])])
BIG = request([resource_spans([scope_spans([span(i) for i in range(3)], "a"),
                               scope_spans([span(3)], "b")], "one"),
               resource_spans([scope_spans([span(4), span(5)])], "two")])
INVALID_IDS = request([resource_spans([scope_spans([
    span(0), span(1, trace=b"\0" * 16), span(2, span_id=b"short"), span(3, trace=b"")])])])
UNKNOWN = request([resource_spans([scope_spans([span(0, extra=ln(99, "future") + vi(100, 7))])])
                   + ln(50, "rs-unknown")]) + ln(7, "top-level unknown")
ATTRIBUTES = request([resource_spans([scope_spans([span(0, extra=b"".join([
    ln(9, kv("d", dbl(4, 2.5))),
    ln(9, kv("b", ln(7, b"\x00\xffbytes"))),
    ln(9, kv("arr", ln(5, ln(1, any_string("x")) + ln(1, vi(3, 2**63 + 5))))),
    ln(9, kv("kv", ln(6, ln(1, kv("inner", vi(2, 1)))))),
    ln(9, kv("deep_array", nested_array(40))),
    ln(9, kv("deep_kvlist", nested_kvlist(28))),
    ln(9, kv("utf8", any_string("é €  😀"))),
]))])])])
EMPTY_PARTS = request([resource_spans([]), resource_spans([scope_spans([])])])


# ---- OTLP/JSON ----

JSON_FULL = """{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":
{"stringValue":"svc"}}],"droppedAttributesCount":0},"scopeSpans":[{"scope":{"name":"s",
"version":"1.0","attributes":[{"key":"a","value":{"boolValue":true}}]},"spans":[{"traceId":
"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":
"eee19b7ec3c1b173","traceState":"k=v","flags":257,"name":"I'm a server span","kind":2,
"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,"attributes":
[{"key":"i","value":{"intValue":"-42"}},{"key":"d","value":{"doubleValue":2.5e-3}},{"key":"b",
"value":{"bytesValue":"AP8="}},{"key":"arr","value":{"arrayValue":{"values":[{"stringValue":
"x"},{"intValue":7}]}}},{"key":"kv","value":{"kvlistValue":{"values":[{"key":"n","value":
{"stringValue":"\\u00e9\\ud83d\\ude00"}}]}}}],"droppedAttributesCount":1,"events":[{
"timeUnixNano":"1544712660500000000","name":"e","attributes":[]}],"droppedEventsCount":0,
"links":[{"traceId":"5b8efff798038103d269b633813fc60d","spanId":"eee19b7ec3c1b175",
"attributes":[{"key":"l","value":{"intValue":"1"}}],"flags":1}],"status":{"code":2,
"message":"boom"}}],"schemaUrl":"https://opentelemetry.io/schemas/1.21.0"}],
"schemaUrl":"https://example.com"}]}"""

JSON_SNAKE = """{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":
"0102030405060708090a0b0c0d0e0f10","span_id":"0102030405060708","parent_span_id":"",
"name":"snake","kind":"SPAN_KIND_CLIENT","start_time_unix_nano":1,"end_time_unix_nano":
"2","status":{"code":"STATUS_CODE_OK"},"unknown_field":{"ignored":[1,2,3]}}]}]}]}"""

JSON_NULLS = """{"resourceSpans":[{"resource":null,"scopeSpans":[{"scope":null,"spans":[
{"traceId":"0102030405060708090A0B0C0D0E0F10","spanId":"0102030405060708","name":null,
"attributes":[{"key":"k","value":{"doubleValue":"NaN"}},{"key":"e","value":{}}]}]}]}]}"""

JSON_INVALID = [
    '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"00000000000000000000000000000000",'
    '"spanId":"0102030405060708"}]}]}]}',
    '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"01"}]}]}]}',
    '{"resourceSpans":[1,2,3]}',
    '{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":'
    '{"bytesValue":"not base64!"}}]}]}]}]}',
    '[' * 130 + ']' * 130,
    '{}',
]


def json_deep(depth):
    value = '{"stringValue":"leaf"}'
    for _ in range(depth):
        value = '{"arrayValue":{"values":[' + value + ']}}'
    return ('{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":'
            '"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","attributes":'
            '[{"key":"deep","value":' + value + '}]}]}]}]}')


# ---- spool segment format (agent/spool/format.hpp) ----

def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def spool_record(payload, spans=1, written_ms=1700000000000, flags=0):
    head = struct.pack("<IIIIqI", 0x31535253, len(payload), spans, flags, written_ms,
                       crc32c(payload))
    return head + struct.pack("<I", crc32c(head)) + payload


def ack_entry(offset, seq=1):
    check = crc32c(b"SRA1" + struct.pack("<QI", seq, offset))
    return struct.pack("<II", offset, check)


def spool_input(mode, ack, segment):
    assert len(ack) < 256
    return bytes([mode, len(ack)]) + ack + segment


# ---- gRPC ----

def grpc_frame(message, flag=0, declared=None):
    return bytes([flag]) + struct.pack(">I", len(message) if declared is None else declared) + \
        message


def gz(data):
    return gzip.compress(data, mtime=0)


def zl(data):
    return zlib.compress(data)


def write(harness, name, data):
    directory = os.path.join(CORPUS, harness)
    os.makedirs(directory, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(directory, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    for directory in os.listdir(CORPUS) if os.path.isdir(CORPUS) else []:
        for name in os.listdir(os.path.join(CORPUS, directory)):
            if name.startswith("seed-"):
                os.remove(os.path.join(CORPUS, directory, name))

    # fuzz_wire: max_bytes (2 bytes LE, % 4096 + 1), max_spans (% 32 + 1), the request.
    for name, req in [("small", SMALL), ("big", BIG), ("invalid-ids", INVALID_IDS),
                      ("unknown-fields", UNKNOWN), ("attributes", ATTRIBUTES),
                      ("empty-parts", EMPTY_PARTS)]:
        write("fuzz_wire", name, struct.pack("<H", 300) + bytes([1]) + req)
    write("fuzz_wire", "tiny-limits", struct.pack("<H", 0) + bytes([0]) + BIG)
    write("fuzz_wire", "deep-array-88", struct.pack("<H", 4095) + bytes([31]) + request(
        [resource_spans([scope_spans([span(0, extra=ln(9, kv("d", nested_array(42))))])])]))

    # fuzz_json: the JSON text.
    write("fuzz_json", "full", JSON_FULL)
    write("fuzz_json", "snake-case", JSON_SNAKE)
    write("fuzz_json", "nulls", JSON_NULLS)
    write("fuzz_json", "deep-40", json_deep(40))
    for i, text in enumerate(JSON_INVALID):
        write("fuzz_json", "invalid-%d" % i, text)

    # fuzz_inflate: mode (bit 0 zlib, bit 1 compress first, bit 7 mutate, level = mode >> 2
    # % 13), cap byte (* 97), flip byte, data.
    text = b"OTLP spans, spans, spans " * 40
    write("fuzz_inflate", "gzip", bytes([0, 255, 0]) + gz(text))
    write("fuzz_inflate", "zlib", bytes([1, 255, 0]) + zl(text))
    write("fuzz_inflate", "gzip-two-members", bytes([0, 255, 0]) + gz(text[:100]) + gz(text))
    write("fuzz_inflate", "gzip-over-cap", bytes([0, 3, 0]) + gz(text))
    write("fuzz_inflate", "gzip-truncated", bytes([0, 255, 0]) + gz(text)[:-6])
    write("fuzz_inflate", "gzip-trailing-zeros", bytes([0, 255, 0]) + gz(text) + b"\0" * 8)
    write("fuzz_inflate", "gzip-bomb", bytes([0, 40, 0]) + gz(b"\0" * 200000))
    write("fuzz_inflate", "compress-level6", bytes([2 | 6 << 2, 255, 0]) + SMALL)
    write("fuzz_inflate", "compress-mutate", bytes([3 | 1 << 2 | 0x80, 200, 77]) + SMALL)

    # fuzz_grpc_message: algorithm (0 none, 1 deflate, 2 gzip, 3 unknown), cap byte (* 67),
    # slice cuts, message.
    write("fuzz_grpc_message", "none", bytes([0, 255, 0x55]) + SMALL)
    write("fuzz_grpc_message", "gzip", bytes([2, 255, 0x0F]) + gz(SMALL))
    write("fuzz_grpc_message", "deflate", bytes([1, 255, 0xF0]) + zl(SMALL))
    write("fuzz_grpc_message", "gzip-over-cap", bytes([2, 1, 0]) + gz(BIG))
    write("fuzz_grpc_message", "unknown", bytes([3, 255, 0]) + gz(SMALL))
    write("fuzz_grpc_message", "no-message", bytes([0, 0, 0xFF]))

    # fuzz_grpc: encoding (% 5: none gzip deflate identity snappy; (b / 5) % 2: a send() per
    # frame), DATA frame cuts, the gRPC body.
    write("fuzz_grpc", "plain", bytes([0, 0]) + grpc_frame(SMALL))
    write("fuzz_grpc", "plain-split", bytes([5, 0x21]) + grpc_frame(BIG))
    write("fuzz_grpc", "gzip", bytes([1, 0x02]) + grpc_frame(gz(SMALL), 1))
    write("fuzz_grpc", "deflate", bytes([2, 0]) + grpc_frame(zl(INVALID_IDS), 1))
    write("fuzz_grpc", "unflagged-gzip", bytes([1, 0]) + grpc_frame(SMALL))
    write("fuzz_grpc", "flag-without-encoding", bytes([3, 0]) + grpc_frame(SMALL, 1))
    write("fuzz_grpc", "two-messages", bytes([0, 0x10]) + grpc_frame(SMALL) + grpc_frame(SMALL))
    write("fuzz_grpc", "trailing-prefix", bytes([0, 0]) + grpc_frame(SMALL) + b"\0\0\0")
    write("fuzz_grpc", "short-declared", bytes([0, 0]) + grpc_frame(SMALL, 0, len(SMALL) + 9))
    write("fuzz_grpc", "empty-message", bytes([0, 0]) + grpc_frame(b""))
    write("fuzz_grpc", "snappy", bytes([4, 0]) + grpc_frame(SMALL))

    # fuzz_spool: mode (bit 0 repair CRCs, bit 1 repair acks, bit 2 newest first, bit 3
    # max_age 1h), ack length, ack bytes, segment 1.
    recs = [spool_record(SMALL[:40], 2), spool_record(b"second", 1, 1699999000000),
            spool_record(b"third record", 3, 1700000000000 - 7200000)]
    seg = b"".join(recs)
    offsets = [0, len(recs[0]), len(recs[0]) + len(recs[1])]
    write("fuzz_spool", "three-records", spool_input(0, b"", seg))
    write("fuzz_spool", "acked", spool_input(0, ack_entry(offsets[1]) + ack_entry(offsets[0])[:5],
                                             seg))
    write("fuzz_spool", "newest-first-max-age", spool_input(12, b"", seg))
    write("fuzz_spool", "torn-tail", spool_input(0, b"", seg + recs[0][:20]))
    write("fuzz_spool", "torn-payload", spool_input(0, b"", seg + recs[1][:-2]))
    corrupt = bytearray(seg)
    corrupt[offsets[1] + 35] ^= 0x40  # payload byte of the second record
    corrupt[offsets[2] + 5] ^= 0x01   # header byte of the third
    write("fuzz_spool", "corrupt", spool_input(0, b"", bytes(corrupt) + recs[0]))
    write("fuzz_spool", "repair", spool_input(3, b"\x01" * 16, b"garbage SRS1" + bytes(28) +
                                              b"payload SRS1" + bytes(40)))

    # fuzz_config: YAML texts.
    for name in ["spanrelay.yaml"] + sorted(os.listdir(os.path.join(REPO, "config", "examples"))):
        path = os.path.join(REPO, "config", name) if name == "spanrelay.yaml" else \
            os.path.join(REPO, "config", "examples", name)
        with open(path, "rb") as f:
            write("fuzz_config", name.replace(".yaml", ""), f.read())
    write("fuzz_config", "merge-and-env", """\
defaults: &upstream
  type: otlp_http
  endpoint: ${SPANRELAY_FUZZ_UNSET:-https://otlp.example.com/otlp}
  compression: gzip
  retry: {max_elapsed: 1m, initial_interval: 250ms}
receivers:
  http: {endpoint: "127.0.0.1:0", max_request_bytes: 4MiB}
  grpc: {endpoint: "[::1]:0", keepalive: {time: 1m30s}}
exporters:
  a:
    <<: *upstream
    headers: {x-scope: "$$literal"}
  b:
    <<: [*upstream]
    type: otlp_grpc
    endpoint: otlp.example.com:4317
buffer: {max_bytes: 64MiB}
batch: {max_spans: 512, timeout: 200ms}
spool: {path: /nonexistent/spool, fsync: interval, on_full: reject}
log: {level: debug, format: json}
""")
    write("fuzz_config", "secrets", """\
exporters:
  g:
    type: otlp_http
    endpoint: https://otlp.example.com
    auth: {username: "123", password_env: SPANRELAY_FUZZ_NO_SUCH_VAR}
  f:
    type: otlp_http
    endpoint: https://otlp.example.com
    auth: {username: "1", password_file: /nonexistent/secret}
""")
    write("fuzz_config", "invalid", "receivers: [1, 2\nexporters: {a: {type: file}}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
