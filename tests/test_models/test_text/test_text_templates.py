"""Tests of mmquerymeld.models.text.templates (prompt sets, synonyms, name cleaning)."""
import pytest

from mmquerymeld.models.text.templates import (FOREGROUND_PROMPT, PHOTO_TEMPLATES, TEMPLATE_SETS,
                                               clean_class_name, fill_templates, raw_text,
                                               resolve_templates, split_synonyms)


def test_named_sets_resolve_and_hold_one_slot():
    assert resolve_templates('photo') == PHOTO_TEMPLATES
    assert len(PHOTO_TEMPLATES) > 5
    assert resolve_templates('all') == ('all {}', )  # UniLSeg table 1
    for name, templates in TEMPLATE_SETS.items():
        assert all(t.count('{}') == 1 for t in templates), name
    assert FOREGROUND_PROMPT == 'the most salient object'


def test_custom_template_list_is_validated():
    assert resolve_templates(['a {} here', 'one {}']) == ('a {} here', 'one {}')
    with pytest.raises(KeyError, match='unknown template set'):
        resolve_templates('no-such-set', 'task_templates')
    with pytest.raises(ValueError, match=r'task_templates\[.semantic.\].*exactly one'):
        resolve_templates(['no slot'], "task_templates['semantic']")
    with pytest.raises(ValueError, match='empty'):
        resolve_templates([])


def test_synonyms_split_clean_and_dedup():
    assert split_synonyms('person/people') == ('person', 'people')
    assert split_synonyms(['aerosol_can', 'spray_can']) == ('aerosol can', 'spray can')
    assert split_synonyms('a/a/b') == ('a', 'b')
    assert split_synonyms('traffic_light', sep=None) == ('traffic light', )
    assert split_synonyms('a/b', sep=None, clean=False) == ('a/b', )
    assert clean_class_name('  bow_(weapon) ') == 'bow (weapon)'


def test_bad_entries_name_the_field():
    with pytest.raises(TypeError, match=r'texts\[3\]'):
        split_synonyms(7, where='texts[3]')
    with pytest.raises(ValueError, match=r'texts\[0\]: empty'):
        split_synonyms(' / ', where='texts[0]')
    with pytest.raises(ValueError, match='empty'):
        raw_text('   ')
    assert raw_text(' the dog on the left ') == 'the dog on the left'


def test_fill_templates():
    assert fill_templates('cat', ('a photo of a {}.', 'all {}')) == ['a photo of a cat.', 'all cat']
