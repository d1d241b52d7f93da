"""Label configs: our parser against every template Label Studio ships, read by Label Studio's own SDK."""

from __future__ import annotations

import pytest
import yaml

from adapters.labelstudio.config import ConfigError, parse_config
from tests.labelstudio_server import Installation, install

CONFIG = """
<View>
  <Image name="image" value="$image"/>
  <Image name="pages" valueList="$pages"/>
  <Text name="text" value="$text"/>
  <RectangleLabels name="box" toName="image,pages" strokeWidth="3">
    <Label value="Face"/><Label value="Eye" alias="E"/>
  </RectangleLabels>
  <PolygonLabels name="poly" toName="image"><Label value="Coin"/></PolygonLabels>
  <KeyPointLabels name="kp" toName="image" smart="true"><Label value="Eye"/></KeyPointLabels>
  <EllipseLabels name="ellipse" toName="image"><Label value="Cell"/></EllipseLabels>
  <BrushLabels name="brush" toName="image"><Label value="Sky"/></BrushLabels>
  <Rectangle name="rect" toName="image"/>
  <View style="display: flex">
    <Choices name="blur" toName="image" choice="single-radio">
      <Choice value="Blurry"/><Choice value="Sharp" alias="S"/><Choice value="Sharp"/>
    </Choices>
  </View>
  <Choices name="topics" toName="text" choice="multiple"><Choice value="Sport"/><Choice value="News"/></Choices>
  <Choices name="dynamic" toName="text" value="$options"/>
  <TextArea name="caption" toName="image"/>
  <Labels name="ner" toName="text"><Label value="Person"/><Label value="Email" alias="mail"/></Labels>
  <Taxonomy name="taxonomy" toName="text">
    <Choice value="Animal"><Choice value="Bird" alias="B"><Choice value="Owl"/></Choice></Choice>
    <Choice value="Plant"/>
  </Taxonomy>
</View>
"""


@pytest.fixture(scope="module")
def labelstudio() -> Installation:
    return install()


def test_controls_objects_and_labels() -> None:
    config = parse_config(CONFIG)
    assert [(o.name, o.type, o.data_key) for o in config.objects] == [
        ("image", "Image", "image"), ("pages", "Image", "pages"), ("text", "Text", "text")]
    assert [c.name for c in config.controls] == [
        "box", "poly", "kp", "ellipse", "brush", "rect", "blur", "topics", "dynamic", "caption", "ner", "taxonomy"]
    box = config.control("box")
    assert (box.type, box.result_type, box.to_name) == ("RectangleLabels", "rectanglelabels", ("image", "pages"))
    assert [(label.value, label.result_value) for label in box.labels] == [("Face", "Face"), ("Eye", "E")]
    assert box.label("E") is box.label("Eye") is box.labels[1]
    assert box.attributes["strokeWidth"] == "3" and config.objects_of(box)[1].type == "Image"
    assert config.control("kp").attributes["smart"] == "true"
    assert config.control("rect").labels == ()
    blur = config.control("blur")
    assert [label.result_value for label in blur.labels] == ["Blurry", "S", "Sharp"] and not blur.multiple
    assert config.control("topics").multiple
    assert config.control("dynamic").dynamic and not config.control("topics").dynamic
    assert [label.result_value for label in config.control("ner").labels] == ["Person", "mail"]
    assert [label.path for label in config.control("taxonomy").labels] == [
        ("Animal",), ("Animal", "B"), ("Animal", "B", "Owl"), ("Plant",)]


def templates(labelstudio: Installation) -> list[tuple[str, str]]:
    root = labelstudio.package / "annotation_templates"
    found = [(str(path.relative_to(root)), yaml.safe_load(path.read_text())["config"])
             for path in sorted(root.rglob("config.yml"))]
    found += [(str(path.relative_to(root)), path.read_text()) for path in sorted(root.rglob("config.xml"))]
    return found


SDK_PARSE = """
import json, sys
from label_studio_sdk._extensions.label_studio_tools.core.label_config import parse_config
print(json.dumps([parse_config(config) for config in json.load(sys.stdin)]))
"""


def test_every_template_reads_as_label_studio_reads_it(labelstudio: Installation) -> None:
    found = templates(labelstudio)
    assert len(found) >= 100  # 69 config.yml and 33 config.xml in 1.23.2
    theirs = labelstudio.run_python(SDK_PARSE, [config for _, config in found])
    for (name, config), parsed in zip(found, theirs):
        ours = {control.name: (control.type, list(control.to_name), [label.result_value for label in control.labels])
                for control in parse_config(config).controls}
        expected = {key: (tag["type"], tag["to_name"], tag.get("labels", [])) for key, tag in parsed.items()}
        assert ours == expected, name


@pytest.mark.parametrize("xml, message", [
    ('<!DOCTYPE v [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><View><Header value="&b;"/></View>', "DTD"),
    ('<!DOCTYPE v SYSTEM "file:///etc/passwd"><View/>', "DTD"),
    ('<View><Header value="&nbsp;"/></View>', "not well-formed"),
    ("<View><Image name='image' value='$image'></View>", "not well-formed"),
    ("<View><Image name='a' value='$a'/><Text name='a' value='$b'/></View>", "unique"),
    ("<View><Image name='a' value='$a'/><Choices name='c' toName='b'><Choice value='x'/></Choices></View>",
     "no object tag"),
])
def test_refused(xml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(xml)
