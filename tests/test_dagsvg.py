import xml.etree.ElementTree as ET

from l1web.web import dagsvg
from l1web.web.dagsvg import DrawNode

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup) -> ET.Element:
    return ET.fromstring(str(markup))


def two_branches(**states) -> list[DrawNode]:
    return [
        DrawNode("src", "SOURCE", (), states.get("src")),
        DrawNode("left", "EFFECT", ("src",), states.get("left")),
        DrawNode("right", "EFFECT", ("src",), states.get("right")),
        DrawNode("join", "SEQUENCE", ("left", "right"), states.get("join")),
    ]


def test_levels_are_longest_distance_from_a_source():
    assert dagsvg.levels(two_branches()) == {"src": 0, "left": 1, "right": 1, "join": 2}


def test_nodes_are_laid_out_left_to_right_by_level():
    svg = parse(dagsvg.render(two_branches()))
    xs = {g.find(f"{SVG}title").text.split()[0]: float(g.get("transform").split("(")[1].split(",")[0])
          for g in svg.iter(f"{SVG}g")}
    assert xs["src"] < xs["left"] == xs["right"] < xs["join"]


def test_each_edge_is_drawn():
    svg = parse(dagsvg.render(two_branches()))
    assert len([p for p in svg.iter(f"{SVG}path") if p.get("class") == "dag-edge"]) == 4


def test_each_node_shows_its_state_in_colour_label_and_title():
    svg = parse(dagsvg.render(two_branches(src="cached", left="completed", right="failed", join="skipped")))
    nodes = {g.find(f"{SVG}title").text.split()[0]: g for g in svg.iter(f"{SVG}g")}
    assert nodes["right"].get("class") == "dag-node state-failed"
    assert nodes["right"].find(f"{SVG}rect").get("fill") == dagsvg.COLOURS["failed"][0]
    assert "failed" in "".join(nodes["right"].itertext())
    assert nodes["join"].find(f"{SVG}title").text == "join (SEQUENCE): skipped"


def test_picture_is_an_accessible_image_summing_up_states():
    svg = parse(dagsvg.render(two_branches(src="cached", left="running", right="running", join="pending"),
                              title="Steps of run abc"))
    assert svg.get("role") == "img"
    assert svg.get("aria-label") == "Steps of run abc: 4 nodes (1 cached, 1 pending, 2 running)"


def test_markup_in_names_types_and_errors_is_escaped():
    node = DrawNode('<script>alert("x")</script>', "EFFECT<b>", (), "failed", detail="bad & <worse>")
    markup = str(dagsvg.render([node], title='<img src=x onerror="y">'))
    assert "<script>" not in markup and "<b>" not in markup and "<img" not in markup
    svg = parse(markup)  # still well-formed XML
    assert svg.find(f"{SVG}g/{SVG}title").text == '<script>alert("x")</script> (EFFECT<b>): failed — bad & <worse>'


def test_long_labels_are_clipped_but_titles_keep_the_full_id():
    long_id = "a_very_long_node_identifier_indeed"
    svg = parse(dagsvg.render([DrawNode(long_id, "SOURCE")]))
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert texts[0].endswith("…") and len(texts[0]) == dagsvg.LABEL_CHARS
    assert svg.find(f"{SVG}g/{SVG}title").text.startswith(long_id)


def test_unknown_state_is_drawn_neutral():
    svg = parse(dagsvg.render([DrawNode("x", "SOURCE", (), 'evil" onload="1')]))
    assert svg.find(f"{SVG}g").get("class") == "dag-node state-none"


def test_steps_and_recipe_dags_convert_to_nodes():
    steps = [{"step_id": "a", "type": "SOURCE", "inputs": [], "status": "cached"},
             {"step_id": "b", "type": "EFFECT", "inputs": ["a"], "status": "running", "error": ""}]
    assert dagsvg.from_steps(steps)[1] == DrawNode("b", "EFFECT", ("a",), "running", "")
    dag = {"nodes": [{"id": "a", "type": "SOURCE", "inputs": []}, {"id": "b", "type": "EFFECT", "inputs": ["a"]}],
           "output": "b"}
    assert [n.state for n in dagsvg.from_dag(dag)] == [None, None]


def test_a_cycle_in_the_data_does_not_hang_the_drawing():
    nodes = [DrawNode("a", "EFFECT", ("b",)), DrawNode("b", "EFFECT", ("a",))]
    assert set(dagsvg.levels(nodes)) == {"a", "b"}
    parse(dagsvg.render(nodes))


def chunked_steps(chunk_states, join_state="pending"):
    chunks = [{"step_id": f"fx~c{i}", "type": "EFFECT", "inputs": ["v"], "status": s,
               "chunk": {"of": "fx", "index": i, "count": len(chunk_states)}}
              for i, s in enumerate(chunk_states)]
    return [{"step_id": "v", "type": "SOURCE", "status": "cached"}, *chunks,
            {"step_id": "fx", "type": "EFFECT", "inputs": [c["step_id"] for c in chunks] + ["v"],
             "status": join_state, "join": {"chunks": [c["step_id"] for c in chunks]}}]


def test_a_chunked_step_is_one_node_with_its_chunks_progress():
    nodes = dagsvg.from_steps(chunked_steps(["completed", "running", "queued", "pending"]))
    assert [n.id for n in nodes] == ["v", "fx"]
    fx = nodes[1]
    assert fx.inputs == ("v",) and fx.state == "running" and fx.progress == "1/4 chunks"
    svg = parse(dagsvg.render(nodes))
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "EFFECT · 1/4 chunks" in texts
    assert len([p for p in svg.iter(f"{SVG}path") if p.get("class") == "dag-edge"]) == 1
    done = dagsvg.from_steps(chunked_steps(["completed", "cached"], join_state="completed"))[1]
    assert done.state == "completed" and done.progress == "2/2 chunks"
    failed = dagsvg.from_steps(chunked_steps(["completed", "failed"]))[1]
    assert failed.state == "failed" and "fx~c1" in failed.detail
