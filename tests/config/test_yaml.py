import pytest

from dltrain.config.yaml import YamlError, load_yaml


def test_yaml_12_numbers_and_words():
    value, _ = load_yaml("a: 1e-3\nb: 010\nc: yes\nd: .5\ne: 0x10\nf: ~\ng: True\nh: 2020-01-01\n", "x.yaml")
    assert value == {"a": 0.001, "b": 10, "c": "yes", "d": 0.5, "e": 16, "f": None, "g": True, "h": "2020-01-01"}


def test_lines_of_every_key():
    _, lines = load_yaml("a:\n  b: 1\n  c:\n    - x\n    - {y: 2}\n", "x.yaml")
    assert lines[("a", "b")] == 2
    assert lines[("a", "c", 1)] == 5
    assert lines[("a", "c", 1, "y")] == 5


def test_duplicate_key_is_an_error_with_both_lines():
    with pytest.raises(YamlError) as error:
        load_yaml("a: 1\nb: 2\na: 3\n", "x.yaml")
    assert str(error.value.problems[0]) == "x.yaml:3: a: duplicate key (first given on line 1)"


def test_syntax_error_names_its_line():
    with pytest.raises(YamlError) as error:
        load_yaml("a: 1\nb: [1, 2\nc: 3\n", "cfg.yaml")
    assert error.value.problems[0].where.startswith("cfg.yaml:")
    assert "YAML syntax error" in error.value.problems[0].message


def test_merge_keys_work():
    value, _ = load_yaml("base: &b {lr: 0.1}\nopt:\n  <<: *b\n  type: SGD\n", "x.yaml")
    assert value["opt"] == {"lr": 0.1, "type": "SGD"}
