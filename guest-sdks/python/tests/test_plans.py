"""The plan constructors. Plain CPython, no component runtime."""

import unittest

from sagahost_partner import (
    Calls,
    Compensate,
    DeadLetter,
    Decision_Compensate,
    Decision_Complete,
    Decision_DeadLetter,
    Decision_Forward,
    Decision_Retry,
    ForwardMessage,
    Outcome,
    Plan_Call,
    Plan_Done,
    Request,
    Retry,
    call,
    compensate,
    complete,
    dead_letter,
    forward,
    retry,
)


class PlanTest(unittest.TestCase):
    def test_call_lists_the_requests_and_keeps_the_state(self):
        requests = (Request.get(f"https://x/{i}").with_id(f"r{i}") for i in range(2))
        plan = call(requests, "delete:MDM-42")
        self.assertIsInstance(plan, Plan_Call)
        self.assertEqual(plan.value.state, "delete:MDM-42")
        self.assertEqual([r.id for r in plan.value.requests], ["r0", "r1"])
        self.assertEqual(call([], "s"), Plan_Call(Calls(requests=[], state="s")))

    def test_complete(self):
        self.assertEqual(complete(), Plan_Done(Outcome(decision=Decision_Complete(), compensation_data=None)))

    def test_forward_without_properties_keeps_the_inbound_body(self):
        self.assertEqual(
            forward("next"),
            Plan_Done(Outcome(decision=Decision_Forward([ForwardMessage(route="next", body=None, content_type=None, properties=[])]))),
        )

    def test_forward_takes_properties_as_a_mapping_or_pairs(self):
        expected = [("mdm-id", "MDM-1"), ("source", "mdm")]
        for properties in ({"mdm-id": "MDM-1", "source": "mdm"}, expected, iter(expected)):
            message = forward("next", properties).value.decision.value[0]
            self.assertEqual(message.properties, expected)

    def test_forward_with_a_new_body(self):
        message = forward("next", body="día", content_type="text/plain").value.decision.value[0]
        self.assertEqual((message.body, message.content_type), ("día".encode("utf-8"), "text/plain"))
        self.assertEqual(forward("next", body=b"").value.decision.value[0].body, b"")

    def test_retry_with_and_without_a_delay(self):
        self.assertEqual(retry("MDM create: timeout").value.decision, Decision_Retry(Retry(delay_ms=None, reason="MDM create: timeout")))
        self.assertEqual(retry("throttled", delay_ms=30_000).value.decision.value.delay_ms, 30_000)

    def test_compensate_with_and_without_details(self):
        self.assertEqual(
            compensate("ErpRejected", "400: invalid email").value.decision,
            Decision_Compensate(Compensate(reason="ErpRejected", details="400: invalid email")),
        )
        self.assertIsNone(compensate("ErpRejected").value.decision.value.details)

    def test_dead_letter(self):
        self.assertEqual(
            dead_letter("MdmRejected", "MDM rejected the contact: HTTP 400"),
            Plan_Done(Outcome(decision=Decision_DeadLetter(DeadLetter(reason="MdmRejected", description="MDM rejected the contact: HTTP 400")))),
        )


if __name__ == "__main__":
    unittest.main()
