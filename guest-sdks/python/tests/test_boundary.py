"""The SDK against the classes componentize-py generates from wit/.

Needs the bindings that `scripts/guests/python` generates into
`${CARGO_TARGET_DIR:-target}/guest-sdks/python/bindings` (or the directory
named by SAGAHOST_PYTHON_BINDINGS); without them these tests are skipped.

They check that every model matches its generated class by name and fields,
so the by-name conversion cannot drift from wit/, and run `export`'s handler
on generated values as componentize-py would.
"""

import dataclasses
import os
import pathlib
import sys
import typing
import unittest

import sagahost_partner
from sagahost_partner import (
    Event,
    Event_Message,
    Event_Responses,
    HttpError_Timeout,
    HttpResponse,
    Level,
    Request,
    Value_Guid,
    Value_Reference,
    Value_Text,
    call,
    export,
    forward,
    local_host,
    require_config,
)
from sagahost_partner import models
from sagahost_partner.boundary import to_models, to_wit

_REPO = pathlib.Path(__file__).resolve().parents[3]
_TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", _REPO / "target"))
BINDINGS = pathlib.Path(os.environ.get("SAGAHOST_PYTHON_BINDINGS", _TARGET / "guest-sdks/python/bindings"))

if (BINDINGS / "wit_world").is_dir():
    sys.path.insert(0, str(BINDINGS))
    from componentize_py_types import Err, Ok
    from wit_world.imports import log as wit_log
    from wit_world.imports import types as wit

    HAVE_BINDINGS = True
else:
    HAVE_BINDINGS = False

# The one model that is not shaped like its generated class: WIT's
# `result<http-response, http-error>` is split into two optional fields.
RESHAPED = {"HttpResult": (("id", "response"), ("id", "response", "error"))}


def generated_inbound(**fields):
    return wit.Inbound(
        message_id=fields.get("message_id", "m-1"),
        queue="mdm",
        content_type="application/json",
        properties=fields.get("properties", [("mdm-id", "MDM-1")]),
        body=b"{}",
        context=fields.get("context"),
        saga=wit.Saga(id="s-1", step=0, attempt=1, history=[wit.StepRecord("mdm", "abc", '{"mdmId":"MDM-1"}')]),
    )


def generated_context():
    contact = wit.Entity(
        logical_name="contact",
        id="0c7f",
        attributes=[
            wit.Attribute("firstname", wit.Value_Text("Ana")),
            wit.Attribute("contactid", wit.Value_Guid("0c7f")),
            wit.Attribute("parentcustomerid", wit.Value_Reference(wit.EntityReference("account", "9e4b", None))),
            wit.Attribute("middlename", wit.Value_Null()),
        ],
        formatted_values=[("statecode", "Active")],
    )
    return wit.Context(
        message_name="Create", primary_entity_name="contact", primary_entity_id="0c7f", stage=40, mode=1,
        depth=1, correlation_id=None, user_id=None, initiating_user_id=None, organization_id=None,
        organization_name=None, operation_id=None, operation_created_on=None, target=0, target_reference=None,
        pre_images=[], post_images=[wit.Image("PostImage", 0)], entities=[contact], message_size_exceeded=False,
        json="{}",
    )


@unittest.skipUnless(HAVE_BINDINGS, f"no generated bindings in {BINDINGS}: run scripts/guests/python")
class ModelsMatchTheWitTest(unittest.TestCase):
    def generated_classes(self):
        return {
            name: cls
            for name, cls in vars(wit).items()
            if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == wit.__name__
        }

    def test_every_generated_class_has_a_model_with_the_same_fields(self):
        for name, cls in self.generated_classes().items():
            with self.subTest(name):
                model = getattr(models, name, None)
                self.assertTrue(dataclasses.is_dataclass(model), f"sagahost_partner.models has no `{name}`")
                generated = tuple(f.name for f in dataclasses.fields(cls))
                ours = tuple(f.name for f in dataclasses.fields(model))
                self.assertEqual((generated, ours), RESHAPED.get(name, (generated, generated)))

    def test_every_model_has_a_generated_class(self):
        generated = self.generated_classes()
        for name, cls in vars(models).items():
            if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__name__ == name:
                self.assertIn(name, generated, f"models.{name} is not in wit/")

    def test_variants_have_the_same_cases(self):
        for name in ["Value", "HeaderValue", "HttpError", "Decision", "Plan", "Event"]:
            with self.subTest(name):
                generated = [case.__name__ for case in typing.get_args(getattr(wit, name))]
                ours = [case.__name__ for case in typing.get_args(getattr(models, name))]
                self.assertEqual(generated, ours)

    def test_log_levels_match(self):
        self.assertEqual([level.name for level in wit_log.Level], [level.name for level in Level])


@unittest.skipUnless(HAVE_BINDINGS, f"no generated bindings in {BINDINGS}: run scripts/guests/python")
class ConversionTest(unittest.TestCase):
    def test_a_generated_event_becomes_models_with_the_same_values(self):
        event = to_models(wit.Event_Message(generated_inbound(context=generated_context())))
        self.assertIsInstance(event, Event_Message)
        inbound = event.inbound
        self.assertIsInstance(inbound, models.Inbound)
        self.assertEqual(inbound.property("mdm-id"), "MDM-1")
        self.assertEqual(inbound.properties, [("mdm-id", "MDM-1")])
        self.assertEqual(inbound.body, b"{}")
        self.assertEqual(inbound.saga.history[0].compensation_data, '{"mdmId":"MDM-1"}')
        contact = inbound.context.target_entity
        self.assertIsInstance(contact, models.Entity)
        self.assertEqual(contact.attr("firstname"), Value_Text("Ana"))
        self.assertEqual(contact.attr("contactid"), Value_Guid("0c7f"))
        self.assertEqual(
            contact.attr("parentcustomerid"),
            Value_Reference(models.EntityReference(logical_name="account", id="9e4b", name=None)),
        )
        self.assertIsInstance(contact.attr("middlename"), models.Value_Null)
        self.assertEqual(contact.formatted_values, [("statecode", "Active")])
        self.assertEqual(inbound.context.post_images, [models.Image(name="PostImage", entity=0)])

    def test_http_results_split_into_response_and_error(self):
        answers = wit.Responses(
            inbound=generated_inbound(),
            state="create",
            results=[
                wit.HttpResult("a", Ok(wit.HttpResponse(429, [("retry-after", "30")], b"slow down"))),
                wit.HttpResult("b", Err(wit.HttpError_Timeout())),
            ],
            round=1,
        )
        event = to_models(wit.Event_Responses(answers))
        self.assertIsInstance(event, Event_Responses)
        first, second = event.value.results
        self.assertEqual(first.response, HttpResponse(status=429, headers=[("retry-after", "30")], body=b"slow down"))
        self.assertIsNone(first.error)
        self.assertEqual(first.retry_after_ms, 30_000)
        self.assertIsNone(second.response)
        self.assertEqual(second.error, HttpError_Timeout())
        self.assertEqual(second.describe(), "timeout")

    def test_plans_become_the_generated_classes_variant_by_variant(self):
        plan = to_wit(forward("next", {"mdm-id": "MDM-1"}).recording({"mdmId": "MDM-1"}), wit)
        self.assertIs(type(plan), wit.Plan_Done)
        self.assertIs(type(plan.value), wit.Outcome)
        self.assertIs(type(plan.value.decision), wit.Decision_Forward)
        [message] = plan.value.decision.value
        self.assertIs(type(message), wit.ForwardMessage)
        self.assertEqual(message.properties, [("mdm-id", "MDM-1")])
        self.assertEqual(plan.value.compensation_data, '{"mdmId":"MDM-1"}')

        request = Request.patch("https://x/").bearer_secret("t").secret_header("k", "s").header("If-Match", "*")
        plan = to_wit(call([request.json({"a": None})], "write"), wit)
        self.assertIs(type(plan), wit.Plan_Call)
        [lowered] = plan.value.requests
        self.assertIs(type(lowered), wit.HttpRequest)
        self.assertEqual(
            [type(h.value) for h in lowered.headers],
            [wit.HeaderValue_SecretTemplate, wit.HeaderValue_Secret, wit.HeaderValue_Literal, wit.HeaderValue_Literal],
        )
        self.assertIs(type(lowered.headers[0].value.value), wit.SecretTemplate)
        self.assertEqual(lowered.body, b'{"a":null}')

    def test_only_sdk_models_go_to_the_host(self):
        @dataclasses.dataclass
        class Plan_Done:
            value: object

        with self.assertRaisesRegex(TypeError, "build plans with sagahost_partner"):
            to_wit(Plan_Done(None), wit)


@unittest.skipUnless(HAVE_BINDINGS, f"no generated bindings in {BINDINGS}: run scripts/guests/python")
class ExportTest(unittest.TestCase):
    @staticmethod
    def handle(event: Event):
        base = require_config("mdm-url")
        match event:
            case Event_Message(inbound) if inbound.property("mdm-id"):
                return call([Request.delete(f"{base}/contacts/{inbound.property('mdm-id')}")], "delete")
            case Event_Message():
                return None
        raise AssertionError("unexpected event")

    def test_the_handler_takes_and_returns_generated_classes(self):
        handler = export(self.handle)()
        with local_host({"mdm-url": "https://mdm.example.com"}):
            plan = handler.handle(wit.Event_Message(generated_inbound()))
        self.assertIs(type(plan), wit.Plan_Call)
        self.assertEqual(plan.value.requests[0].url, "https://mdm.example.com/contacts/MDM-1")

    def test_a_partner_error_becomes_err_with_its_text(self):
        handler = export(self.handle)()
        with local_host({}):
            with self.assertRaises(Err) as raised:
                handler.handle(wit.Event_Message(generated_inbound()))
        self.assertIs(type(raised.exception), Err)
        self.assertEqual(raised.exception.value, "config key `mdm-url` is not set: add it to [partners.<name>.config]")

    def test_a_handler_that_returns_no_plan_fails_saying_what_it_returned(self):
        handler = export(self.handle)()
        with local_host({"mdm-url": "https://mdm.example.com"}):
            with self.assertRaisesRegex(TypeError, r"handle returned None, not a plan"):
                handler.handle(wit.Event_Message(generated_inbound(properties=[])))

    def test_other_exceptions_escape_so_the_component_traps(self):
        def broken(event):
            raise KeyError("contactid")

        with self.assertRaises(KeyError):
            export(broken)().handle(wit.Event_Message(generated_inbound()))

    def test_the_handler_keeps_the_functions_docstring(self):
        def documented(event):
            """Registers contacts."""

        self.assertEqual(export(documented).__doc__, "Registers contacts.")


class PackageTest(unittest.TestCase):
    def test_the_package_exports_what_it_lists(self):
        for name in sagahost_partner.__all__:
            self.assertTrue(hasattr(sagahost_partner, name), name)


if __name__ == "__main__":
    unittest.main()
