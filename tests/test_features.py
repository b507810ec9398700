"""Side features: schema inference on training entities, exact encodings, JSON, side files, tags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reelrec.data.dataset import Dataset
from reelrec.data.features import (
    FeatureSchema,
    FeatureSpec,
    attach_tags,
    encode_features,
    infer_schema,
    load_item_info,
    load_user_info,
    parse_feature_requests,
    with_item_info,
    with_user_info,
)
from reelrec.errors import ConfigError, DataError

# item 5 is rated only in the held-out part: it must not shape the fitted schema
ITEMS = pd.DataFrame(
    {
        "title": ["A", "B", "C", "D", "E", "F"],
        "year": pd.array([1990, 2000, None, 2010, 1950, 1980], dtype="Int64"),
        "genres": ["Action|Comedy", "Drama", "", "Action|Drama", "Western|Drama", "Comedy|Drama"],
        "studio": ["x", "y", "x", "x", "z", "y"],
    },
    index=pd.Index([1, 2, 3, 4, 5, 6], name="item"),
)
USERS = pd.DataFrame(
    {
        "age": [20, 30, 30, 40],
        "score": [0.5, 1.5, 2.5, np.nan],
        "gender": ["M", "F", "M", "F"],
        "zip": ["12345", "12999", "T8H1N", "02460"],
    },
    index=pd.Index([10, 11, 12, 13], name="user"),
)


def _data() -> tuple[Dataset, Dataset]:
    """(full dataset, training part without item 5's ratings)."""
    frame = pd.DataFrame(
        {
            "user": [10, 10, 11, 11, 12, 12, 13, 13, 10],
            "item": [1, 2, 2, 3, 4, 6, 1, 6, 5],
            "rating": [4, 3, 5, 2, 4, 3, 5, 1, 2],
        }
    )
    full = Dataset.from_frame(frame, name="tiny", item_info=ITEMS, user_info=USERS)
    return full, full.subset(np.arange(8))


def _spec(schema: FeatureSchema, name: str) -> FeatureSpec:
    return next(f for f in schema.features if f.name == name)


class TestInference:
    def test_defaults_and_inferred_kinds(self) -> None:
        _, train = _data()
        items = infer_schema(train, "item")
        assert [(f.name, f.kind) for f in items.features] == [
            ("year", "numeric"),
            ("genres", "multihot"),
            ("studio", "categorical"),
        ]  # the title is free text, never a default feature
        users = infer_schema(train, "user")
        kinds = {f.name: (f.kind, f.prefix) for f in users.features}
        # few distinct integers: categorical; floats: numeric; zip-like names: a 2-character prefix
        assert kinds == {
            "age": ("categorical", None),
            "score": ("numeric", None),
            "gender": ("categorical", None),
            "zip": ("categorical", 2),
        }

    def test_categories_and_standardisation_are_fitted_on_training_entities_only(self) -> None:
        _, train = _data()
        items = infer_schema(train, "item")
        genres = _spec(items, "genres")
        assert "Western" not in genres.categories  # only the untrained item 5 has it
        assert genres.categories == ["Drama", "Action", "Comedy"]  # by entity count, then name
        year = _spec(items, "year")
        trained_years = np.array([1990, 2000, 2010, 1980], dtype=float)  # item 3 has none, 5 untrained
        assert year.mean == pytest.approx(trained_years.mean())
        assert year.std == pytest.approx(trained_years.std())
        assert _spec(items, "studio").categories == ["x", "y"]
        full, _ = _data()
        assert "Western" in _spec(infer_schema(full, "item"), "genres").categories

    def test_explicit_columns_and_kinds(self) -> None:
        _, train = _data()
        columns, kinds = parse_feature_requests(["age=numeric,zip=prefix:1", " gender "])
        assert columns == ["age", "zip", "gender"]
        assert kinds == {"age": "numeric", "zip": "prefix:1"}
        schema = infer_schema(train, "user", columns, kinds)
        assert [f.name for f in schema.features] == columns
        assert _spec(schema, "age").kind == "numeric"
        assert _spec(schema, "zip").prefix == 1
        assert _spec(schema, "zip").categories == ["1", "0", "T"]

    def test_generic_kind_inference(self) -> None:
        info = pd.DataFrame(
            {
                "keywords": ["a|b", "b", "c|a", "b"],  # "|" inside: multihot
                "label": ["p", "q", "p", "r"],  # strings: categorical
                "size": [1.5, 2.5, 3.0, 4.25],  # floats: numeric
                "count": [0, 100, 0, 300],  # few distinct integers: categorical
                "const": ["k", "k", "k", "k"],  # one value: skipped by default
                "code": ["u1", "u2", "u3", "u4"],  # unique free text: skipped by default
            },
            index=pd.Index(["m0", "m1", "m2", "m3"], name="item"),
        )
        frame = pd.DataFrame({"user": [1, 1, 2, 2], "item": ["m0", "m1", "m2", "m3"], "rating": [1, 2, 3, 4]})
        ds = Dataset.from_frame(frame, name="generic", item_info=info)
        kinds = {f.name: f.kind for f in infer_schema(ds, "item").features}
        assert kinds == {
            "keywords": "multihot",
            "label": "categorical",
            "size": "numeric",
            "count": "categorical",
        }
        # asked for explicitly, a constant column is kept
        assert len(infer_schema(ds, "item", ["const"]).features) == 1
        assert _spec(infer_schema(ds, "item", max_int_categories=2), "count").kind == "numeric"

    def test_top_k_categories_and_min_count(self) -> None:
        _, train = _data()
        schema = infer_schema(train, "item", ["genres"], max_categories=2)
        assert schema.features[0].categories == ["Drama", "Action"]
        schema = infer_schema(train, "item", ["genres"], min_count=3)
        assert schema.features[0].categories == ["Drama"]

    def test_errors_are_one_line(self) -> None:
        full, train = _data()
        with pytest.raises(ConfigError, match="user feature 'agee' is not a column"):
            infer_schema(train, "user", ["agee"])
        with pytest.raises(ConfigError, match="unknown kind 'ordinal'"):
            parse_feature_requests(["age=ordinal"])
        with pytest.raises(ConfigError, match="requested twice"):
            parse_feature_requests(["age", "age=numeric"])
        with pytest.raises(ConfigError, match="'gender' is numeric but has the value 'M'"):
            infer_schema(train, "user", ["gender"], {"gender": "numeric"})
        bare = Dataset.from_frame(full.to_frame(), name="bare")
        with pytest.raises(DataError, match="bare has no user information"):
            infer_schema(bare, "user", ["age"])
        assert len(infer_schema(bare, "user")) == 0  # defaults: simply no features


class TestSchemaJson:
    def test_round_trip(self) -> None:
        _, train = _data()
        for side in ("user", "item"):
            schema = infer_schema(train, side)
            again = FeatureSchema.from_json(json.loads(json.dumps(schema.to_json())))
            assert again == schema
            assert again.describe() == schema.describe()

    def test_malformed_schema_is_a_data_error(self) -> None:
        with pytest.raises(DataError, match="malformed feature schema"):
            FeatureSchema.from_json(
                {"side": "user", "features": [{"name": "a", "side": "user", "kind": "x"}]}
            )
        spec = {"name": "a", "side": "item", "kind": "numeric"}
        with pytest.raises(DataError, match="item feature in a user schema"):
            FeatureSchema.from_json({"side": "user", "features": [spec]})
        with pytest.raises(DataError, match="appears twice"):
            FeatureSchema.from_json({"side": "item", "features": [spec, spec]})


class TestEncoding:
    def test_exact_values(self) -> None:
        _, train = _data()
        schema = infer_schema(train, "item", ["genres", "studio", "year"])
        ids = np.array([1, 5, 99, 3])  # 5: untrained, with an unknown genre and studio; 99: no info
        enc = encode_features(schema, ITEMS, ids)
        # genres block: [none, Drama, Action, Comedy]
        np.testing.assert_array_equal(
            enc["multihot"],
            np.array([[0, 0, 1, 1], [0, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]], dtype=np.float32),
        )
        assert enc["multihot"].dtype == np.float32
        # studio: x -> 1, y -> 2, z (unknown) and no info -> 0
        np.testing.assert_array_equal(enc["categorical"], np.array([[1], [0], [0], [1]]))
        assert enc["categorical"].dtype == np.int64
        year = _spec(schema, "year")
        expected = np.array(
            [[(1990 - year.mean) / year.std, 0], [(1950 - year.mean) / year.std, 0], [0, 1], [0, 1]],
            dtype=np.float32,
        )
        np.testing.assert_allclose(enc["numeric"], expected, rtol=1e-6)
        assert enc["numeric"].dtype == np.float32

    def test_layout_of_several_features(self) -> None:
        _, train = _data()
        schema = infer_schema(train, "user")  # age cat, score num, gender cat, zip prefix cat
        enc = encode_features(schema, USERS, np.array([10, 13, 77]))
        assert enc["categorical"].shape == (3, 3)  # age, gender, zip in schema order
        assert enc["numeric"].shape == (3, 2)  # score, then its missing flag
        assert enc["multihot"].shape == (3, 0)
        zip_spec = _spec(schema, "zip")
        assert enc["categorical"][0, 2] == 1 + zip_spec.categories.index("12")
        assert enc["categorical"][1, 2] == 1 + zip_spec.categories.index("02")  # leading zero kept
        np.testing.assert_array_equal(enc["categorical"][2], [0, 0, 0])  # user 77: no information
        np.testing.assert_array_equal(enc["numeric"][1:, 1], [1, 1])  # user 13: score missing

    def test_string_ids_match_an_int_index_by_value(self) -> None:
        _, train = _data()
        schema = infer_schema(train, "item", ["studio"])
        a = encode_features(schema, ITEMS, np.array([2, 3]))
        b = encode_features(schema, ITEMS.set_axis(ITEMS.index.astype(str)), np.array([2, 3]))
        np.testing.assert_array_equal(a["categorical"], b["categorical"])

    def test_missing_table_and_bad_tables(self) -> None:
        _, train = _data()
        schema = infer_schema(train, "item", ["genres", "year"])
        enc = encode_features(schema, None, np.array([1, 2]))
        np.testing.assert_array_equal(enc["multihot"][:, 0], [1, 1])
        np.testing.assert_array_equal(enc["numeric"], [[0, 1], [0, 1]])
        with pytest.raises(DataError, match="has no column 'genres'"):
            encode_features(schema, ITEMS.drop(columns="genres"), np.array([1]))
        with pytest.raises(DataError, match="more than once"):
            encode_features(schema, pd.concat([ITEMS, ITEMS.iloc[:1]]), np.array([1]))


class TestTags:
    def test_attach_tags(self) -> None:
        full, _ = _data()
        tags = pd.DataFrame(
            {
                "user": [1, 2, 3, 1, 2, 1, 1],
                "item": [1, 2, 6, 1, 1, 2, 4],
                "tag": ["Funny", "funny ", "FUNNY", "dark", "Dark", "a|b", "rare"],
            }
        )
        out = attach_tags(full, tags, top_n=3)
        # funny: 3 movies, dark: 1, a/b: 1, rare: 1 -> keep funny, a/b, dark (count, then name)
        assert out.item_info["tags"].to_dict() == {
            1: "funny|dark",
            2: "funny|a/b",
            3: "",
            4: "",
            5: "",
            6: "funny",
        }
        assert out.item_info["title"].tolist() == ITEMS["title"].tolist()
        schema = infer_schema(out, "item", ["tags"])
        assert schema.features[0].kind == "multihot"
        assert schema.features[0].lower

    def test_tags_need_a_source(self) -> None:
        full, _ = _data()
        with pytest.raises(DataError, match="not a MovieLens folder with a tag file"):
            attach_tags(full)


class TestSideFiles:
    def test_movielens_user_files(self, tmp_path: Path) -> None:
        dat = tmp_path / "users.dat"
        dat.write_text("1::F::1::10::48067\n2::M::56::16::70072\n4::M::45::7::02460\n")
        users = load_user_info(dat)
        assert users.index.tolist() == [1, 2, 4]
        assert users.loc[1, "occupation"] == "K-12 student"
        assert users.loc[4, "zip"] == "02460"
        assert users["age"].tolist() == [1, 56, 45]
        folder = tmp_path / "ml"
        folder.mkdir()
        (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
        assert load_user_info(folder)["occupation"].tolist() == ["technician", "other"]

    def test_generic_user_file(self, tmp_path: Path) -> None:
        path = tmp_path / "people.tsv"
        path.write_text("userId\tage\tzip\tplan\theight\n7\t31\t02460\tgold\t1.80\n8\t22\t94043\t\t1.65\n")
        users = load_user_info(path)
        assert users.index.tolist() == [7, 8]
        assert users.index.name == "user"
        assert pd.api.types.is_integer_dtype(users["age"])
        assert pd.api.types.is_float_dtype(users["height"])
        assert users["zip"].tolist() == ["02460", "94043"]  # a leading zero keeps a code as text
        assert users.loc[7, "plan"] == "gold"
        assert pd.isna(users.loc[8, "plan"])
        assert load_user_info(path, columns=["plan"]).columns.tolist() == ["plan"]

    def test_side_file_errors(self, tmp_path: Path) -> None:
        path = tmp_path / "u.csv"
        path.write_text("person,age\n1,20\n")
        with pytest.raises(DataError, match="no user column 'user_id'"):
            load_user_info(path)
        path.write_text("user_id,age\n1,20\n1,30\n")
        with pytest.raises(DataError, match="user id 1 appears more than once"):
            load_user_info(path)
        path.write_text("user_id,age\n1,20\n")
        with pytest.raises(DataError, match="no column 'height'"):
            load_user_info(path, columns=["height"])
        with pytest.raises(DataError, match="no such file"):
            load_user_info(tmp_path / "users.dat")

    def test_item_files(self, tmp_path: Path) -> None:
        dat = tmp_path / "movies.dat"
        dat.write_text("1::Toy Story (1995)::Animation|Comedy\n2::Heat (1995)::Action\n")
        items = load_item_info(dat)
        assert items.loc[1, "genres"] == "Animation|Comedy"
        assert items.loc[2, "year"] == 1995
        csv = tmp_path / "extra.csv"
        csv.write_text("movieId,budget,keywords\n1,30.5,toys|friendship\n2,60,crime\n")
        extra = load_item_info(csv)
        assert extra.index.name == "item"
        assert extra["budget"].tolist() == [30.5, 60.0]
        assert extra.loc[1, "keywords"] == "toys|friendship"

    def test_with_user_and_item_info(self) -> None:
        full, _ = _data()
        bare = Dataset.from_frame(full.to_frame(), name="bare", item_info=ITEMS[["title"]])
        ds = with_user_info(bare, USERS.set_axis(USERS.index.astype(str)))  # "10" names user 10
        assert ds.user_info.loc[10, "gender"] == "M"
        ds = with_item_info(ds, pd.DataFrame({"budget": [1.0, 2.0]}, index=[1, 2]))
        assert ds.item_info.loc[1, "title"] == "A"
        assert ds.item_info.loc[2, "budget"] == 2.0
        assert pd.isna(ds.item_info.loc[3, "budget"])
        with pytest.raises(DataError, match="none of the 4 users of bare is in the user table"):
            with_user_info(bare, USERS.set_axis([100, 101, 102, 103]))


@pytest.mark.realdata
def test_ml1m_users_apply_to_the_ml1m_ratings_file(data_home: Path) -> None:
    from reelrec.data.tabular import load_ratings

    users = load_user_info(data_home / "ml-1m" / "users.dat")
    assert users.shape == (6040, 4)
    ds = with_user_info(load_ratings(data_home / "ml-1m-ratings" / "ratings.csv"), users)
    schema = infer_schema(ds, "user")
    kinds = {f.name: f.kind for f in schema.features}
    assert kinds == {
        "age": "categorical",
        "gender": "categorical",
        "occupation": "categorical",
        "zip": "categorical",
    }
    enc = encode_features(schema, ds.user_info, ds.users.ids)
    assert (enc["categorical"][:, :3] > 0).all()  # every user has an age group, gender and occupation


@pytest.mark.realdata
def test_ml_latest_small_tags(data_home: Path) -> None:
    from reelrec.data.movielens import load_movielens

    ds = attach_tags(load_movielens("ml-latest-small", data_home=data_home), top_n=50)
    schema = infer_schema(ds, "item")
    assert [f.name for f in schema.features] == ["year", "genres", "tags"]
    assert len(schema.features[2].categories) == 50
    enc = encode_features(schema, ds.item_info, ds.items.ids)
    start = schema.multihot_widths[0] + 1  # after the genres block and the tags' "none" column
    tagged = enc["multihot"][:, start:].sum(1) > 0
    assert 300 < tagged.sum() < 1600


def test_the_schema_module_is_reexported_by_features() -> None:
    """hybrid.py and runs/source.py import the schema from reelrec.data.features as before."""
    from reelrec.data import feature_schema, features

    for name in feature_schema.__all__:
        assert getattr(features, name) is getattr(feature_schema, name), name
    assert set(feature_schema.__all__) <= set(features.__all__)
