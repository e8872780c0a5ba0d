"""`saferlhf run` runs two stages at once on a two-core machine unless told otherwise."""

from saferlhf.service.cli.serve import laptop_settings
from saferlhf.service.settings import load_settings


def test_two_stages_at_once_where_there_are_two_cores_and_one_on_a_single_core():
    settings = load_settings(env={})
    assert laptop_settings(settings, cpus=2).max_concurrent_stages == 2
    assert laptop_settings(settings, cpus=16).max_concurrent_stages == 2
    assert laptop_settings(settings, cpus=1).max_concurrent_stages == 1


def test_a_concurrency_the_user_set_is_kept():
    settings = load_settings(env={"SAFERLHF_MAX_CONCURRENT_STAGES": "1"})
    assert laptop_settings(settings, cpus=2).max_concurrent_stages == 1
