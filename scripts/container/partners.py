#!/usr/bin/env python3
"""The partner systems of scripts/container-test, on loopback: an MDM that assigns contact ids
(POST /api/contacts, key in x-api-key) and an ERP that creates customers (POST /api/customers,
bearer token). Each request is appended as one JSON line to the log file; the listening port is
written to the port file.

Usage: partners.py PORT_FILE LOG_FILE  (with MDM_API_KEY and ERP_TOKEN in the environment)
"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT_FILE, LOG_FILE = sys.argv[1], sys.argv[2]
MDM_API_KEY = os.environ["MDM_API_KEY"]
ERP_TOKEN = os.environ["ERP_TOKEN"]
lock = threading.Lock()
issued = 0


class Partners(BaseHTTPRequestHandler):
    def do_POST(self):
        global issued
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/api/contacts":
            authorized = self.headers.get("x-api-key") == MDM_API_KEY
            with lock:
                issued += 1
                answer = {"id": f"MDM-{issued:06}"}
        elif self.path == "/api/customers":
            authorized = self.headers.get("authorization") == f"Bearer {ERP_TOKEN}"
            answer = {"created": True}
        else:
            self.reply(404, {"error": "no such path"})
            return
        try:
            sent = json.loads(body)
        except ValueError:
            sent = None
        with lock, open(LOG_FILE, "a") as log:
            log.write(json.dumps({"path": self.path, "authorized": authorized, "body": sent}) + "\n")
        if authorized:
            self.reply(201, answer)
        else:
            self.reply(401, {"error": "wrong credentials"})

    def reply(self, status, answer):
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Partners)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
