"""The helpers on the models: request builders, answer classification, context
accessors and compensation data. Plain CPython, no component runtime."""

import json
import unittest

from sagahost_partner import (
    Attribute,
    Context,
    Entity,
    Event_Compensate,
    Event_Message,
    Event_Responses,
    Compensation,
    Header,
    HeaderValue_Literal,
    HeaderValue_Secret,
    HeaderValue_SecretTemplate,
    HttpError_Blocked,
    HttpError_Connection,
    HttpError_Invalid,
    HttpError_Timeout,
    HttpError_TooLarge,
    HttpRequest,
    HttpResponse,
    HttpResult,
    Inbound,
    Request,
    Responses,
    Saga,
    SecretTemplate,
    Status,
    Value_Guid,
    Value_Integer,
    Value_Null,
    Value_Text,
    call,
    complete,
    forward,
)


def response(status, body=b"", headers=()):
    return HttpResponse(status=status, headers=list(headers), body=body)


def inbound(**fields):
    return Inbound(message_id="m-1", queue="q", saga=Saga(id="s-1", step=0, attempt=1), **fields)


class RequestBuilderTest(unittest.TestCase):
    def test_a_new_request_is_named_after_its_method_with_no_headers_or_body(self):
        request = HttpRequest.new("OPTIONS", "https://example.com/")
        self.assertEqual(request, HttpRequest(id="options", method="OPTIONS", url="https://example.com/"))
        self.assertEqual(request.headers, [])
        self.assertIsNone(request.body)
        self.assertIsNone(request.timeout_ms)

    def test_each_method_constructor_sets_its_method(self):
        for build, method in [
            (Request.get, "GET"),
            (Request.post, "POST"),
            (Request.put, "PUT"),
            (Request.patch, "PATCH"),
            (Request.delete, "DELETE"),
        ]:
            request = build("https://example.com/x")
            self.assertEqual((request.method, request.id, request.url), (method, method.lower(), "https://example.com/x"))

    def test_builders_chain_and_keep_header_order(self):
        request = (
            Request.post("https://erp.example.com/customers")
            .with_id("create")
            .header("If-Match", "*")
            .secret_header("x-api-key", "mdm-api-key")
            .bearer_secret("erp-token")
            .with_timeout(2_500)
        )
        self.assertEqual(request.id, "create")
        self.assertEqual(request.timeout_ms, 2_500)
        self.assertEqual(
            request.headers,
            [
                Header(name="If-Match", value=HeaderValue_Literal("*")),
                Header(name="x-api-key", value=HeaderValue_Secret("mdm-api-key")),
                Header(
                    name="Authorization",
                    value=HeaderValue_SecretTemplate(SecretTemplate(template="Bearer {}", secret="erp-token")),
                ),
            ],
        )

    def test_json_writes_compact_utf8_and_sets_the_content_type_once(self):
        request = Request.post("https://x/").json({"name": "Zoë", "email": None, "n": [1, 2]})
        self.assertEqual(request.body, '{"name":"Zoë","email":null,"n":[1,2]}'.encode("utf-8"))
        self.assertEqual(request.headers, [Header(name="Content-Type", value=HeaderValue_Literal("application/json"))])

    def test_json_keeps_a_content_type_already_set_whatever_its_case(self):
        request = Request.post("https://x/").header("content-type", "application/merge-patch+json").json({})
        self.assertEqual([h.name for h in request.headers], ["content-type"])
        self.assertEqual(request.body, b"{}")

    def test_with_body_takes_bytes_or_text(self):
        self.assertEqual(Request.put("https://x/").with_body(b"\x00\x01").body, b"\x00\x01")
        self.assertEqual(Request.put("https://x/").with_body("día").body, "día".encode("utf-8"))


class AnswerTest(unittest.TestCase):
    def test_status_codes_classify_as_the_rust_sdk_does(self):
        for code, status in [
            (200, Status.SUCCESS),
            (204, Status.SUCCESS),
            (299, Status.SUCCESS),
            (199, Status.FATAL),
            (300, Status.FATAL),
            (400, Status.FATAL),
            (404, Status.FATAL),
            (408, Status.TRANSIENT),
            (429, Status.TRANSIENT),
            (500, Status.TRANSIENT),
            (503, Status.TRANSIENT),
            (599, Status.TRANSIENT),
            (600, Status.FATAL),
        ]:
            self.assertIs(Status.of_code(code), status, code)
            self.assertIs(HttpResult(id="r", response=response(code)).status, status, code)

    def test_errors_classify_as_transient_or_fatal(self):
        for error, status in [
            (HttpError_Timeout(), Status.TRANSIENT),
            (HttpError_Connection("reset"), Status.TRANSIENT),
            (HttpError_TooLarge(10), Status.TRANSIENT),
            (HttpError_Blocked("evil.example.com"), Status.FATAL),
            (HttpError_Invalid("bad header"), Status.FATAL),
        ]:
            result = HttpResult(id="r", error=error)
            self.assertIs(result.status, status, error)
            self.assertIsNone(result.code)
            self.assertIsNone(result.retry_after_ms)

    def test_describe_gives_one_line_per_outcome(self):
        self.assertEqual(HttpResult(id="r", response=response(429)).describe(), "HTTP 429")
        self.assertEqual(
            HttpResult(id="r", response=response(503, b"Down for\n  maintenance ")).describe(),
            "HTTP 503: Down for maintenance",
        )
        self.assertEqual(HttpResult(id="r", error=HttpError_Timeout()).describe(), "timeout")
        self.assertEqual(
            HttpResult(id="r", error=HttpError_Blocked("x.example")).describe(), "blocked: x.example is not allowed"
        )
        self.assertEqual(
            HttpResult(id="r", error=HttpError_Connection("reset")).describe(), "connection failed: reset"
        )
        self.assertEqual(
            HttpResult(id="r", error=HttpError_TooLarge(123)).describe(), "response too large: 123 bytes"
        )
        self.assertEqual(HttpResult(id="r", error=HttpError_Invalid("no")).describe(), "invalid request: no")

    def test_excerpt_collapses_whitespace_and_cuts_at_a_character_count(self):
        answer = response(500, "  a\tb\n\nc  ".encode())
        self.assertEqual(answer.excerpt(), "a b c")
        long = response(500, ("é" * 250).encode())
        self.assertEqual(long.excerpt(200), "é" * 200 + "…")
        self.assertEqual(response(500, ("x" * 200).encode()).excerpt(200), "x" * 200)
        self.assertEqual(response(500, b"ok \xff").excerpt(), "ok \ufffd")
        self.assertEqual(HttpResult(id="r", response=long).describe(), "HTTP 500: " + "é" * 200 + "…")

    def test_a_result_holds_exactly_one_of_response_and_error(self):
        with self.assertRaisesRegex(ValueError, "exactly one"):
            HttpResult(id="r")
        with self.assertRaisesRegex(ValueError, "exactly one"):
            HttpResult(id="r", response=response(200), error=HttpError_Timeout())

    def test_headers_are_found_whatever_their_case(self):
        answer = response(200, headers=[("content-type", "text/plain"), ("x-a", "1"), ("X-A", "2")])
        self.assertEqual(answer.header("Content-Type"), "text/plain")
        self.assertEqual(answer.header("x-a"), "1")
        self.assertIsNone(answer.header("etag"))

    def test_retry_after_reads_whole_seconds_only(self):
        for value, expected in [
            ("30", 30_000),
            (" 120 ", 120_000),
            ("+5", 5_000),
            ("0", 0),
            ("-5", None),
            ("1.5", None),
            ("3_0", None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
            ("18446744073709551615", (1 << 64) - 1),
            ("18446744073709551616", None),
        ]:
            answer = response(429, headers=[("retry-after", value)])
            self.assertEqual(answer.retry_after_ms, expected, value)
            self.assertEqual(HttpResult(id="r", response=answer).retry_after_ms, expected, value)
        self.assertIsNone(response(429).retry_after_ms)

    def test_json_parses_the_body_or_gives_none(self):
        self.assertEqual(response(201, b'{"id":"MDM-1"}').json(), {"id": "MDM-1"})
        self.assertIsNone(response(201, b"<html>").json())
        self.assertIsNone(response(204).json())

    def test_responses_find_a_result_by_request_id(self):
        first = HttpResult(id="a", response=response(200))
        second = HttpResult(id="b", error=HttpError_Timeout())
        answers = Responses(inbound=inbound(), state="s", results=[first, second])
        self.assertIs(answers.result("b"), second)
        self.assertIsNone(answers.result("c"))


class ContextTest(unittest.TestCase):
    def contact(self):
        return Entity(
            logical_name="contact",
            id="0c7f",
            attributes=[
                Attribute(name="firstname", value=Value_Text("Ana")),
                Attribute(name="contactid", value=Value_Guid("0c7f")),
                Attribute(name="numberofchildren", value=Value_Integer(2)),
                Attribute(name="middlename", value=Value_Null()),
            ],
        )

    def test_target_entity_resolves_the_index_into_entities(self):
        other = Entity(logical_name="account")
        context = Context(
            message_name="Create", primary_entity_name="contact", stage=40, mode=1, depth=1, target=1,
            entities=[other, self.contact()],
        )
        self.assertEqual(context.target_entity.logical_name, "contact")
        self.assertIsNone(Context(message_name="Delete", primary_entity_name="contact", stage=40, mode=1, depth=1).target_entity)
        out_of_range = Context(message_name="Create", primary_entity_name="x", stage=40, mode=1, depth=1, target=5)
        self.assertIsNone(out_of_range.target_entity)

    def test_attr_and_text_attr(self):
        contact = self.contact()
        self.assertEqual(contact.attr("numberofchildren"), Value_Integer(2))
        self.assertIsNone(contact.attr("lastname"))
        self.assertEqual(contact.text_attr("firstname"), "Ana")
        self.assertEqual(contact.text_attr("contactid"), "0c7f")
        self.assertIsNone(contact.text_attr("numberofchildren"))
        self.assertIsNone(contact.text_attr("middlename"))

    def test_property_finds_the_first_of_a_name(self):
        message = inbound(properties=[("mdm-id", "MDM-1"), ("mdm-id", "MDM-2")])
        self.assertEqual(message.property("mdm-id"), "MDM-1")
        self.assertIsNone(message.property("MDM-ID"))

    def test_every_event_names_its_inbound_message(self):
        message = inbound()
        self.assertIs(Event_Message(message).inbound, message)
        self.assertIs(Event_Responses(Responses(inbound=message, state="s")).inbound, message)
        compensation = Compensation(inbound=message, failed_partner="erp", reason="ErpRejected")
        self.assertIs(Event_Compensate(compensation).inbound, message)


class RecordingTest(unittest.TestCase):
    def test_text_is_recorded_as_is_and_other_values_as_compact_json(self):
        self.assertEqual(complete().recording("MDM-1").value.compensation_data, "MDM-1")
        recorded = forward("next").recording({"mdmId": "MDM-1", "n": 1}).value.compensation_data
        self.assertEqual(recorded, '{"mdmId":"MDM-1","n":1}')
        self.assertEqual(json.loads(recorded), {"mdmId": "MDM-1", "n": 1})

    def test_a_call_plan_refuses_compensation_data(self):
        with self.assertRaisesRegex(TypeError, "not to call"):
            call([Request.get("https://x/")], "s").recording("data")


if __name__ == "__main__":
    unittest.main()
