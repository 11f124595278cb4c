"""Staff's control room in Debian's chromium against a live server and a real worker cluster:
three photos uploaded from the event's admin page, the queue page refreshing itself, a photo
with its faces framed, the clusters of faces nobody claims; axe-core on each; screenshots in
test-artifacts/."""

from __future__ import annotations

import pytest

from tests.browser import DESKTOP, PASSWORD, new_page, screenshot
from tests.cluster import running_cluster, wait_until
from tests.e2e.test_accessibility import assert_accessible

pytestmark = [
    pytest.mark.browser,
    pytest.mark.faces,
    pytest.mark.django_db(transaction=True),
]

PHOTOS = ["people/obama/obama_2.jpg", "groups/two_people.jpg", "people/kit_harington/kit_2.jpg"]


@pytest.fixture(scope="module")
def axe():
    from axe_playwright_python.sync_playwright import Axe

    return Axe()


def admin_log_in(page, username: str) -> None:
    page.goto("/admin/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/")


def test_upload_in_the_admin_then_the_queue_and_a_photo_with_its_faces(
    browser, axe, live_server, faces_dir, django_user_model
):
    from rest_framework.authtoken.models import Token

    from events.models import Event
    from photos.models import Photo

    marta = django_user_model.objects.create_superuser(username="marta", password=PASSWORD)
    Token.objects.create(user=marta)  # listed on the event page, under axe's eye too
    event = Event.objects.create(name="Spring Gala", slug="gala")
    page = new_page(browser, live_server.url, DESKTOP)
    admin_log_in(page, "marta")

    with running_cluster(workers=2) as cluster:
        # Three photos dropped on the event's page: hashed, checked, sent, with progress.
        page.goto(f"/admin/events/event/{event.pk}/change/")
        page.get_by_role("heading", name="Upload photos").wait_for()
        page.locator("#findme-files").set_input_files([str(faces_dir / p) for p in PHOTOS])
        page.get_by_text("3 of 3 done").wait_for(timeout=60_000)
        assert page.locator("[data-list] [data-state=new]").count() == 3
        assert Photo.objects.filter(event=event).count() == 3
        screenshot(page, "admin-upload.png")
        assert_accessible(axe, page, "event admin page after an upload")
        # The same files again: the server already has them, nothing is sent twice.
        page.locator("#findme-files").set_input_files([str(faces_dir / p) for p in PHOTOS])
        page.locator("[data-list] [data-state=duplicate]").nth(2).wait_for(timeout=30_000)
        assert Photo.objects.filter(event=event).count() == 3

        wait_until(
            lambda: Photo.objects.filter(event=event, status=Photo.Status.DONE).count() == 3,
            timeout=120,
            proc=cluster,
            what="the three photos to be processed",
        )

        # The queue page, refreshed by itself: the cluster and its workers are seen.
        page.goto("/admin/queue/")
        page.get_by_role("heading", name="Throughput, last hour").wait_for()
        page.locator('[data-stat="processed_last_hour"]').filter(has_text="3").wait_for(
            timeout=15_000
        )
        assert page.locator(".findme-clusters tbody tr").count() == 1
        assert page.locator('[data-stat="workers_active"]').inner_text() == "2"
        screenshot(page, "admin-queue.png")
        assert_accessible(axe, page, "queue page")

    # A photo with its faces framed and who each face is.
    group = Photo.objects.get(event=event, original_name="two_people.jpg")
    page.goto("/admin/photos/photo/?q=two_people")
    page.locator(f'img[src="/api/photos/{group.pk}/thumb/"]').wait_for()
    page.goto(f"/admin/photos/photo/{group.pk}/change/")
    faces = page.locator("svg.findme-faces rect")
    faces.first.wait_for()
    assert faces.count() == group.face_count == 2
    page.wait_for_function(
        "() => { const i = document.querySelector('svg.findme-faces image');"
        " return i && i.getBBox().width > 0; }"
    )
    screenshot(page, "admin-photo-faces.png")
    assert_accessible(axe, page, "photo page with its faces")

    # The faces nobody claims, grouped: no one has joined, so every face is in a cluster.
    from faces.models import Cluster, Face
    from faces.services import event_settle

    event_settle(event_id=event.pk)
    assert Cluster.objects.filter(event=event).exists()
    page.goto("/admin/faces/cluster/")
    page.locator("img.findme-crop").first.wait_for()
    assert (
        page.locator("img.findme-crop").count()
        == Face.objects.filter(event=event, cluster__isnull=False).count()
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.findme-crop')]"
        ".every((i) => i.complete && i.naturalWidth > 0)"
    )
    screenshot(page, "admin-clusters.png")
    assert_accessible(axe, page, "clusters page")
    page.context.close()
