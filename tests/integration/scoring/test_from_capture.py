"""The example config end to end through capture and scoring: the landing-page forms of
leadflow.example.yaml get the grades docs/scoring.md promises."""

from __future__ import annotations

import uuid

from tests.integration.scoring.support import scored_events, settled


async def test_the_example_forms_are_graded_as_documented(
    backend, broker, settings_factory, running_service
):
    settings = settings_factory(backend, kafka_bootstrap=broker.bootstrap)
    tag = uuid.uuid4().hex[:8]
    posts = {
        "demo": (
            "demo-request",
            {
                "work_email": f"ada.{tag}@analytical-engines.co.uk",
                "name": "Ada Lovelace",
                "company": "Analytical Engines",
                "title": "Director of Engineering",
                "country": "GB",
                "company_size": "120",
                "utm_source": "google",
                "utm_medium": "cpc",
                "marketing_consent": "yes",
            },
        ),
        "guide": (
            "guide-download",
            {"email": f"sam.{tag}@gmail.com", "first_name": "Sam", "marketing_consent": "on"},
        ),
        "newsletter": ("newsletter", {"email": f"lee.{tag}@gmail.com", "marketing_consent": "on"}),
        "contact": (
            "contact-sales",
            {"email": f"jo.{tag}@acme.io", "company": "Acme", "message": "Call me"},
        ),
    }
    async with (
        running_service("capture", settings) as capture,
        running_service("scoring", settings) as scoring,
    ):
        await settled(scoring)
        leads = {}
        for name, (form, body) in posts.items():
            response = await capture.client.post(f"/v1/forms/{form}", json=body)
            assert response.status_code == 202, response.text
            leads[name] = response.json()["lead_id"]
        events = {e.lead_id: e for e in await scored_events(broker.bootstrap, 4, timeout=20)}
        explained = await scoring.client.get(f"/v1/leads/{leads['demo']}/score")

    demo, guide = events[leads["demo"]], events[leads["guide"]]
    newsletter, contact = events[leads["newsletter"]], events[leads["contact"]]
    assert (demo.grade, demo.sales_ready, demo.became_sales_ready) == ("hot", True, True)
    assert (demo.score, demo.fit, demo.engagement) == (80, 50, 30)
    assert demo.channel == "google_ads" and demo.contact.job_title == "Director of Engineering"
    assert demo.fields.get("company_size") == "120" and demo.marketing_consent
    assert (guide.grade, guide.sales_ready, guide.score) == ("cold", False, 0)
    assert (newsletter.grade, newsletter.sales_ready, newsletter.score) == ("cold", False, -5)
    assert (newsletter.marketing_consent, newsletter.double_opt_in) == (True, True)
    assert contact.sales_ready and contact.became_sales_ready and contact.grade == "warm"
    assert explained.status_code == 200
    assert [r["rule_id"] for r in explained.json()["reasons"]] == [
        "senior_title",
        "target_country",
        "company_size",
        "company_given",
        "paid_search",
        "demo_request",
    ]
