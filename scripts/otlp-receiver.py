#!/usr/bin/env python3
"""An OTLP receiver for weft's telemetry tests, decoding with the
`opentelemetry-proto` package (the OpenTelemetry project's generated classes),
not weft's encoder. OTLP/HTTP (protobuf and JSON on /v1/{traces,metrics,logs}),
or with --grpc OTLP/gRPC (grpcio serving the collector's three services). Prints
each export as one line of JSON (the protobuf JSON mapping, ids in hex) on stdout.

    otlp-receiver.py PORT [--grpc]
"""
import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace

REQUESTS = {
    "/v1/traces": (trace.ExportTraceServiceRequest, trace.ExportTraceServiceResponse),
    "/v1/metrics": (metrics.ExportMetricsServiceRequest, metrics.ExportMetricsServiceResponse),
    "/v1/logs": (logs.ExportLogsServiceRequest, logs.ExportLogsServiceResponse),
}


IDS = {"traceId", "spanId", "parentSpanId"}


def base64_ids(value):
    """OTLP/JSON writes ids in hex; the protobuf JSON mapping reads bytes as base64."""
    if isinstance(value, dict):
        return {k: base64.b64encode(bytes.fromhex(v)).decode() if k in IDS and isinstance(v, str) else base64_ids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [base64_ids(v) for v in value]
    return value


# Exports arrive on several threads at once (two hosts exporting): `print` writes
# the text and the newline apart, so lines could interleave without it.
STDOUT = threading.Lock()


def say(value):
    line = json.dumps(value) + "\n"
    with STDOUT:
        sys.stdout.write(line)
        sys.stdout.flush()


def emit(signal, encoding, request):
    say({
        "signal": signal,
        "encoding": encoding,
        "body": hex_ids(json_format.MessageToDict(request)),
    })


def hex_ids(value):
    """Trace and span ids in hex, as OTLP/JSON and W3C headers write them."""
    if isinstance(value, dict):
        return {k: base64.b64decode(v).hex() if k in IDS and isinstance(v, str) else hex_ids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hex_ids(v) for v in value]
    return value


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        kinds = REQUESTS.get(self.path)
        if kinds is None:
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        request = kinds[0]()
        json_body = self.headers.get("content-type", "").startswith("application/json")
        try:
            if json_body:
                json_format.ParseDict(base64_ids(json.loads(body)), request)
            else:
                request.ParseFromString(body)
        except Exception as e:  # a malformed export is what the tests must see
            say({"signal": self.path[4:], "error": str(e)})
            self.send_error(400, str(e))
            return
        emit(self.path[4:], "json" if json_body else "protobuf", request)
        answer = kinds[1]()
        if json_body:
            out, ctype = json_format.MessageToJson(answer).encode(), "application/json"
        else:
            out, ctype = answer.SerializeToString(), "application/x-protobuf"
        self.send_response(200)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def serve_grpc(port):
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as logs_grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc

    def servicer(base, signal, response):
        class Servicer(base):
            def Export(self, request, context):
                emit(signal, "grpc", request)
                return response()
        return Servicer()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_grpc.add_TraceServiceServicer_to_server(
        servicer(trace_grpc.TraceServiceServicer, "traces", trace.ExportTraceServiceResponse), server)
    metrics_grpc.add_MetricsServiceServicer_to_server(
        servicer(metrics_grpc.MetricsServiceServicer, "metrics", metrics.ExportMetricsServiceResponse), server)
    logs_grpc.add_LogsServiceServicer_to_server(
        servicer(logs_grpc.LogsServiceServicer, "logs", logs.ExportLogsServiceResponse), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    say({"listening": port})
    server.wait_for_termination()


if __name__ == "__main__":
    port = int(sys.argv[1])
    if "--grpc" in sys.argv[2:]:
        serve_grpc(port)
    else:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        say({"listening": server.server_address[1]})
        server.serve_forever()
