from reconciler.plan.topics import TopicInfo, needed, plan
from reconciler.render import Settings
from tests.helpers import example_data, load_data


def test_topics_the_messaging_example_needs() -> None:
    users = needed(load_data(example_data()), Settings(dead_letter_topic="dlq"))
    assert set(users) == {
        "transform-request",
        "transform-result",
        "InvalidMessage",
        "dlq",
        "TestMessagesOutput",
    }
    assert users["transform-request"] == [
        "messaging-example@v1.0.0: test-message-generator OUTPUT",
        "messaging-example@v1.0.0: connector transformer INPUT",
    ]
    assert users["dlq"] == ["messaging-example@v1.0.0: error topic DEAD_LETTER"]


def test_no_topics_without_kafka() -> None:
    data = example_data()
    data["applications"][1]["deploy"] = False
    assert needed(load_data(data), Settings()) == {}


def test_plan_creates_reports_and_never_deletes_by_default() -> None:
    existing = {
        "kept": TopicInfo(1, 1),
        "odd": TopicInfo(6, 1),
        "gone": TopicInfo(1, 1),
        "foreign": TopicInfo(1, 1),
    }
    decided = plan(["kept", "odd", "new"], existing, {"kept", "gone"}, partitions=1, replication_factor=1)
    assert decided.create == ("new",)
    assert decided.unchanged == ("kept",)
    assert decided.mismatched == (("odd", "has 6 partitions and replication factor 1, configured 1 and 1"),)
    assert decided.orphaned == ("gone",)  # "foreign" was never ours: not an orphan
    assert decided.delete == ()
    deleting = plan(
        ["kept"], existing, {"kept", "gone"}, partitions=1, replication_factor=1, delete_enabled=True
    )
    assert (deleting.delete, deleting.orphaned) == (("gone",), ())
