"""The bridge to a vector database: the fixture index's export loaded into Milvus Lite (Milvus's engine and
client API in one process, the client code a Milvus cluster takes) answers as soundalike's exact scan."""

import numpy as np
import pytest

import soundalike
from conftest import need

K = 10


@pytest.fixture(scope="module")
def milvus(tmp_path_factory):
    need("pyarrow", "milvus")
    need("milvus_lite", "milvus")
    pymilvus = need("pymilvus", "milvus")
    client = pymilvus.MilvusClient(str(tmp_path_factory.mktemp("milvus") / "soundalike.db"))
    yield pymilvus, client
    client.close()


def test_milvus_lite_loaded_with_the_export_finds_the_exact_neighbours(milvus, index_dir, clips, tmp_path):
    import pyarrow.parquet as pq

    import soundalike.arrow as sa

    pymilvus, client = milvus
    index = soundalike.Index(index_dir)
    written = sa.export(index, tmp_path / "vectors.parquet", vector="list")
    table = pq.read_table(written["path"])
    dimensions = written["dimensions"]

    schema = client.create_schema(auto_id=False)
    schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
    schema.add_field("video_id", pymilvus.DataType.VARCHAR, max_length=512)
    schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=dimensions)
    params = client.prepare_index_params()
    # A flat index: Milvus's exact search, as `--exact` is soundalike's. The exported vectors are unit
    # length, so cosine is the index's angular order.
    params.add_index(field_name="vector", index_type="FLAT", metric_type="COSINE")
    client.create_collection("clips", schema=schema, index_params=params)
    for batch in table.to_batches(max_chunksize=200):
        client.insert("clips", batch.select(["id", "video_id", "vector"]).to_pylist())
    client.load_collection("clips")
    assert client.get_collection_stats("clips")["row_count"] == index.__len__() == 779

    ids = table.column("video_id").to_pylist()
    vectors = table.column("vector").to_pylist()
    asked = list(range(0, len(ids), 7))
    # A query is made into the index's vector by soundalike (`Index.vector`), as the clips were.
    embeddings = {clip["video_id"]: clip["embedding"] for clip in clips}
    queries = [index.vector(np.array(embeddings[ids[i]], dtype=np.uint8)) for i in asked]
    for i, query in zip(asked, queries):
        np.testing.assert_allclose(query, vectors[i], atol=1e-6)
    found = client.search("clips", data=[q.tolist() for q in queries], limit=K + 1, output_fields=["video_id"],
                          search_params={"metric_type": "COSINE"})
    expected, _ = index.recommend_batch([ids[i] for i in asked], k=K, search=soundalike.Search(exact=True, rerank=0))
    hits = 0
    for row, i in enumerate(asked):
        # The clip itself comes first there; soundalike never lists a clip as its own neighbour.
        theirs = [hit["entity"]["video_id"] for hit in found[row] if hit["entity"]["video_id"] != ids[i]][:K]
        hits += len(set(theirs) & set(expected[row]))
    recall = hits / (K * len(asked))
    print(f"recall@{K} of Milvus Lite against soundalike --exact: {recall:.4f}")
    assert recall >= 0.99, f"recall@{K} of Milvus Lite against soundalike --exact: {recall:.4f}"
