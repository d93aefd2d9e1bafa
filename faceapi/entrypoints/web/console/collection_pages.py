"""Collections pages (operator, admin): collections, subjects with their faces, and
the two actions on a subject: erase (with a typed confirmation) and unlock."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from flask import flash, g, redirect, render_template, request, url_for

from faceapi.domain.errors import FaceApiError, NotFound
from faceapi.entrypoints.web.api.deps import container, request_id, use_cases
from faceapi.entrypoints.web.console.views import bp

FACES_PER_PAGE = 500


@bp.route("/collections", methods=["GET"])
def collections() -> Any:
    """Collections in the key's scope with their face and subject counts."""
    after = request.args.get("after") or None
    page = use_cases().list_collections(actor=g.actor, limit=50, next_token=after)
    rows = [use_cases().describe_collection(c.collection_id, actor=g.actor)
            for c in page.collections]
    next_url = url_for("console.collections", after=page.next_token) if page.next_token else None
    return render_template("collections.html", title="Collections", rows=rows,
                           next_url=next_url)


@bp.route("/collections/<collection_id>", methods=["GET"])
def collection(collection_id: str) -> Any:
    """One collection: its subjects, each with its number of faces."""
    after = request.args.get("after") or None
    found = use_cases().list_faces(collection_id[:128], actor=g.actor, limit=FACES_PER_PAGE,
                                   next_token=after)
    subjects: OrderedDict[str, int] = OrderedDict()
    for face in sorted(found.faces, key=lambda f: f.subject_id):
        subjects[face.subject_id] = subjects.get(face.subject_id, 0) + 1
    next_url = (url_for("console.collection", collection_id=collection_id,
                        after=found.next_token) if found.next_token else None)
    return render_template("collection.html", title=f"Collection {collection_id}",
                           collection=found.collection, subjects=subjects, next_url=next_url)


@bp.route("/collections/<collection_id>/subjects/<subject_id>", methods=["GET"])
def subject(collection_id: str, subject_id: str) -> Any:
    """A subject: consent, faces (images are not kept, so no thumbnails), lockouts."""
    view = use_cases().get_subject(collection_id[:128], subject_id[:128], actor=g.actor)
    locks = use_cases().lockout_status(collection_id, subject_id, actor=g.actor)
    lapsed = view.consent is not None and view.consent.lapsed(container().clock.now())
    return render_template("subject.html", title=f"Subject {subject_id}", view=view,
                           collection_id=collection_id, locks=locks, lapsed=lapsed)


@bp.route("/collections/<collection_id>/subjects/<subject_id>/erase", methods=["POST"])
def subject_erase(collection_id: str, subject_id: str) -> Any:
    """Erase a subject (GDPR Art 17) after the operator typed its id to confirm."""
    back = url_for("console.subject", collection_id=collection_id, subject_id=subject_id)
    if (request.form.get("confirm_subject") or "").strip() != subject_id:
        flash("Type the subject id exactly to confirm the erasure.", "error")
        return redirect(back)
    try:
        report = use_cases().erase_subject(collection_id, subject_id, actor=g.actor)
    except NotFound:
        flash(f"Subject {subject_id} no longer exists.", "error")
        return redirect(url_for("console.collection", collection_id=collection_id))
    flash(f"Subject {subject_id} erased: {report.face_count} face(s), "
          f"{report.consent_count} consent record(s) and its review evidence and lockout "
          f"state are gone (audit event {report.audit_event_id}).", "ok")
    return redirect(url_for("console.collection", collection_id=collection_id))


@bp.route("/collections/<collection_id>/subjects/<subject_id>/unlock", methods=["POST"])
def subject_unlock(collection_id: str, subject_id: str) -> Any:
    """Clear a subject's lockout (one policy or all), audited."""
    policy = request.form.get("policy") or None
    back = url_for("console.subject", collection_id=collection_id, subject_id=subject_id)
    try:
        n = use_cases().unlock(collection_id, subject_id, policy, actor=g.actor,
                               request_id=request_id() or None)
    except FaceApiError as exc:
        flash(exc.message, "error")
        return redirect(back)
    flash(f"Unlocked: lockout state cleared for {n} polic{'y' if n == 1 else 'ies'}.", "ok")
    return redirect(back)
