from datetime import timedelta

from odoo.tests import HttpCase, new_test_user, tagged


@tagged("post_install", "-at_install")
class TestDsrTour(HttpCase):
    def test_officer_registers_request(self):
        new_test_user(
            self.env,
            login="dsr_tour_officer",
            groups="base.group_user,gdpr_dsr.dsr_group_officer",
        )
        self.start_tour(
            "/odoo/action-gdpr_dsr.dsr_request_action",
            "gdpr_dsr_register_request",
            login="dsr_tour_officer",
        )
        request = self.env["dsr.request"].search(
            [("subject_email", "=", "tour.subject@example.com")]
        )
        self.assertEqual(len(request), 1)
        self.assertEqual(request.request_type, "erasure")
        self.assertEqual(request.regime, "ccpa")
        self.assertEqual(request.state, "received")
        self.assertEqual(request.deadline - request.received_date, timedelta(days=45))
        self.assertEqual(request.create_uid.login, "dsr_tour_officer")
