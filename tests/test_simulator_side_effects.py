"""The simulator's §5 pathways as Canvas's code does them: linked observers' rows follow their
student's, linking enrolls, cross-listing and merging move rows with their ids."""

from __future__ import annotations


def state_of(sim, enrollment_id):
    [row] = [row for row in sim.enrollments() if row["id"] == enrollment_id]
    return row


def enroll(sim, token, course_id, user_id, **fields):
    data = {"enrollment[user_id]": user_id, **{f"enrollment[{k}]": v for k, v in fields.items()}}
    response = sim.api("POST", f"courses/{course_id}/enrollments", token, data=data)
    assert response.status_code == 200, response.text
    return response.json()


def linked_row(sim, observer, student_row):
    [row] = [
        row for row in sim.enrollments()
        if row["user_id"] == observer["id"] and row["associated_user_id"] == student_row["user_id"]
        and row["course_section_id"] == student_row["course_section_id"]
    ]
    return row


def test_observer_rows_follow_the_student_s_state(world, sim):
    parent = sim.add_user("Pat Parent")
    student = world.students[0]
    sim.control("POST", "observer_links", {"observer_id": parent["id"], "student_id": student["id"]})
    made = enroll(sim, world.admin["token"], world.course["id"], student["id"])  # invited
    observer = linked_row(sim, parent, made)
    assert observer["enrollment_state"] == "active"  # observers are not invited (update_from)
    path = f"courses/{world.course['id']}/enrollments/{made['id']}"
    for task, expected in (("inactivate", "inactive"), ("delete", "deleted")):
        assert sim.api("DELETE", path, world.admin["token"], params={"task": task}).status_code == 200
        assert state_of(sim, observer["id"])["enrollment_state"] == expected
    # A re-enrollment resurrects the student's row, and the observer's row with it.
    enroll(sim, world.admin["token"], world.course["id"], student["id"], enrollment_state="active")
    after = state_of(sim, observer["id"])
    assert after["enrollment_state"] == "active"
    assert [h["detail"] for h in after["history"][1:]] == ["linked:inactivate", "linked:delete", "linked:reused"]
    assert all(h["linked_to"] == made["id"] for h in after["history"])


def test_an_observer_row_deleted_on_its_own_stays_deleted(world, sim):
    parent = sim.add_user("Pat Parent")
    student = world.students[1]
    sim.control("POST", "observer_links", {"observer_id": parent["id"], "student_id": student["id"]})
    made = enroll(sim, world.admin["token"], world.course["id"], student["id"], enrollment_state="active")
    observer = linked_row(sim, parent, made)
    sim.api("DELETE", f"courses/{world.course['id']}/enrollments/{observer['id']}", world.admin["token"], params={"task": "delete"})
    sim.api("DELETE", f"courses/{world.course['id']}/enrollments/{made['id']}", world.admin["token"], params={"task": "conclude"})
    assert state_of(sim, observer["id"])["enrollment_state"] == "deleted"


def test_linking_an_observer_enrolls_it_in_the_student_s_current_rows(world, sim):
    student = world.students[2]
    active = enroll(sim, world.admin["token"], world.course["id"], student["id"], enrollment_state="active")
    concluded = sim.api("POST", f"sections/{world.section_b}/enrollments", world.admin["token"], data={"enrollment[user_id]": student["id"]}).json()
    sim.api("DELETE", f"courses/{world.course['id']}/enrollments/{concluded['id']}", world.admin["token"])
    parent = sim.add_user("Late Parent")
    link = sim.control("POST", "observer_links", {"observer_id": parent["id"], "student_id": student["id"], "actor_user_id": world.admin["id"]})
    [made] = link["enrollment_ids"]  # only the active row: completed ones are not followed
    row = state_of(sim, made)
    assert (row["associated_user_id"], row["course_section_id"]) == (student["id"], world.section_a)
    assert row["origin"]["channel"] == "ui" and row["origin"]["actor_user_id"] == world.admin["id"]
    assert row["history"][0]["linked_to"] == active["id"] and row["history"][0]["cause"] == "observer_link"


def test_crosslisting_moves_the_section_s_rows_with_their_ids(world, sim):
    made = sim.api("POST", f"sections/{world.section_b}/enrollments", world.admin["token"], data={"enrollment[user_id]": world.students[3]["id"]}).json()
    other = sim.add_course("Other")
    before = state_of(sim, made["id"])["updated_at_precise"]
    assert sim.api("POST", f"sections/{world.section_b}/crosslist/{other['id']}", world.teacher["token"]).status_code == 403
    answer = sim.api("POST", f"sections/{world.section_b}/crosslist/{other['id']}", world.admin["token"]).json()
    assert (answer["course_id"], answer["nonxlist_course_id"]) == (other["id"], world.course["id"])
    row = state_of(sim, made["id"])
    assert row["course_id"] == other["id"] and row["updated_at_precise"] == before  # update_all
    listed = sim.api("GET", f"courses/{other['id']}/enrollments", world.admin["token"]).json()
    assert [e["id"] for e in listed] == [made["id"]]
    answer = sim.api("DELETE", f"sections/{world.section_b}/crosslist", world.admin["token"]).json()
    assert (answer["course_id"], answer["nonxlist_course_id"]) == (world.course["id"], None)
    assert state_of(sim, made["id"])["course_id"] == world.course["id"]
    assert [h["detail"] for h in state_of(sim, made["id"])["history"] if h["action"] == "moved"] == ["crosslist", "uncrosslist"]


def test_merging_users_moves_rows_and_observed_links_to_the_survivor(world, sim):
    duplicate, survivor = world.students[4], world.students[5]
    parent = sim.add_user("Pat Parent")
    sim.control("POST", "observer_links", {"observer_id": parent["id"], "student_id": duplicate["id"]})
    made = enroll(sim, world.admin["token"], world.course["id"], duplicate["id"], enrollment_state="active")
    observer = linked_row(sim, parent, made)
    answer = sim.api("PUT", f"users/{duplicate['id']}/merge_into/{survivor['id']}", world.admin["token"])
    assert answer.status_code == 200 and answer.json()["id"] == survivor["id"]
    assert state_of(sim, made["id"])["user_id"] == survivor["id"]
    assert state_of(sim, observer["id"])["associated_user_id"] == survivor["id"]
    assert sim.api("GET", "users/self", duplicate["token"]).status_code == 401  # the duplicate is gone
    # The parent now observes the survivor: a new row for the survivor gets its observer row.
    again = sim.api("POST", f"sections/{world.section_b}/enrollments", world.admin["token"], data={"enrollment[user_id]": survivor["id"]}).json()
    assert linked_row(sim, parent, again)["history"][0]["linked_to"] == again["id"]
