"""What a user of the installed package sees: the docstrings help() shows, the type stubs, one wheel for every
CPython from 3.9 (abi3)."""

import inspect
import pydoc
from pathlib import Path

import soundalike


def test_help_shows_every_documented_name():
    text = pydoc.render_doc(soundalike, renderer=pydoc.plaintext)
    assert "recommend music by how it sounds" in text
    for name in ["Index", "Embedder", "Search", "embed", "read_tfrecords", "build_index", "class_names",
                 "DamagedIndexError"]:
        assert name in text
        assert getattr(soundalike, name).__doc__, f"{name} has a docstring"
    assert "Give exactly one query" in soundalike.Index.recommend.__doc__
    # Signatures with their keywords, as help() prints them.
    assert "k=10" in str(inspect.signature(soundalike.Index.recommend_batch))
    assert "projection=None" in str(inspect.signature(soundalike.build_index))
    # The search and the audio back end are objects made once, not keywords of every question: the keywords are
    # the question's own (its query, window, count, labels, and since issue 37 whether to explain its hits).
    keywords = [p for p in inspect.signature(soundalike.Index.recommend).parameters.values()
                if p.kind == inspect.Parameter.KEYWORD_ONLY]
    assert [p.name for p in keywords] == ["id", "embedding", "audio", "k", "labels", "search", "start", "end",
                                          "explain"], keywords


def test_the_package_ships_its_stubs_and_one_abi3_module():
    package = Path(soundalike.__file__).parent
    assert (package / "py.typed").exists()
    assert (package / "_soundalike.pyi").exists()
    native = list(package.glob("_soundalike*.so"))
    assert [p.name for p in native] == ["_soundalike.abi3.so"]
    assert len(soundalike.class_names()) == 527 and soundalike.class_names()[137] == "Music"
