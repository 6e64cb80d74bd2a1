"""The lab's dedicated Asterisk user: the pure parts (passwd/group edits, id choice, plan, chown walk)."""
import os

import pytest

from gateway.lab import labuser
from gateway.lab.errors import LabError

PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n"
    "asterisk:x:101:104:Asterisk PBX daemon,,,:/var/lib/asterisk:/usr/sbin/nologin\n"
)
GROUP = "root:x:0:\naudio:x:29:asterisk\nasterisk:x:104:\n"


def test_entries_reads_names_and_ids_and_skips_garbage():
    assert labuser.entries(PASSWD + "broken line\n::\n") == {"root": 0, "_apt": 42, "asterisk": 101}
    assert labuser.entries(GROUP)["asterisk"] == 104


def test_with_id_renumbers_only_the_named_user_and_its_primary_group():
    text = labuser.with_id(PASSWD, "asterisk", 995, 994)
    assert "asterisk:x:995:994:Asterisk PBX daemon,,,:/var/lib/asterisk:/usr/sbin/nologin\n" in text
    assert text.replace("995:994", "101:104") == PASSWD


def test_with_id_on_a_group_keeps_its_members():
    text = labuser.with_id(GROUP, "asterisk", 994)
    assert text == "root:x:0:\naudio:x:29:asterisk\nasterisk:x:994:\n"


def test_with_id_refuses_a_missing_entry():
    with pytest.raises(LabError, match="no entry"):
        labuser.with_id(GROUP, "nobody-here", 1)


def test_pick_free_id_avoids_ids_taken_on_the_host_and_in_the_chroot():
    assert labuser.pick_free_id({999, 997}, {998}) == 996
    assert labuser.pick_free_id(set(), set(), candidates=[5, 4]) == 5
    with pytest.raises(LabError):
        labuser.pick_free_id({1, 2}, candidates=[1, 2])


def test_plan_is_a_no_op_when_the_chroot_already_uses_the_host_ids():
    done = labuser.with_id(PASSWD, "asterisk", 995, 994)
    plan = labuser.plan_migration(done, labuser.with_id(GROUP, "asterisk", 994), (995, 994))
    assert not plan.needed


def test_plan_moves_a_borrowed_uid_to_the_host_user():
    plan = labuser.plan_migration(PASSWD, GROUP, (995, 994))
    assert plan.needed and plan.old == (101, 104) and plan.new == (995, 994)


def test_plan_refuses_host_ids_that_another_chroot_user_holds():
    with pytest.raises(LabError, match="uid 42 \\(_apt\\)"):
        labuser.plan_migration(PASSWD, GROUP, (42, 994))
    with pytest.raises(LabError, match="gid 29 \\(audio\\)"):
        labuser.plan_migration(PASSWD, GROUP, (995, 29))


def test_plan_refuses_a_chroot_without_asterisk():
    with pytest.raises(LabError, match="asterisk installed"):
        labuser.plan_migration("root:x:0:0::/root:/bin/sh\n", GROUP, (995, 994))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_chown_tree_reowns_only_the_old_ids(tmp_path):
    """Files of the old uid or gid move (each id independently); root's and others' stay."""
    (tmp_path / "var" / "lib" / "asterisk").mkdir(parents=True)
    owned = tmp_path / "var" / "lib" / "asterisk" / "astdb.sqlite3"
    owned.write_text("x")
    group_only = tmp_path / "etc-file"
    group_only.write_text("x")
    other = tmp_path / "other"
    other.write_text("x")
    link = tmp_path / "link"
    link.symlink_to("/etc/passwd")  # never followed: the host's file keeps its owner
    os.chown(tmp_path / "var" / "lib" / "asterisk", 101, 104)
    os.chown(owned, 101, 104)
    os.chown(group_only, 0, 104)
    os.chown(other, 102, 105)
    os.lchown(link, 101, 104)
    passwd_owner = os.stat("/etc/passwd")
    count = labuser.chown_tree(tmp_path, labuser.IdPlan((101, 104), (995, 994)))
    assert count == 4
    st = os.stat(owned)
    assert (st.st_uid, st.st_gid) == (995, 994)
    st = os.stat(tmp_path / "var" / "lib" / "asterisk")
    assert (st.st_uid, st.st_gid) == (995, 994)
    st = os.stat(group_only)
    assert (st.st_uid, st.st_gid) == (0, 994)
    st = os.stat(other)
    assert (st.st_uid, st.st_gid) == (102, 105)
    st = os.lstat(link)
    assert (st.st_uid, st.st_gid) == (995, 994)
    assert (os.stat("/etc/passwd").st_uid, os.stat("/etc/passwd").st_gid) == (passwd_owner.st_uid,
                                                                              passwd_owner.st_gid)
    assert labuser.chown_tree(tmp_path, labuser.IdPlan((101, 104), (995, 994))) == 0
