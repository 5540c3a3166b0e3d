#!/usr/bin/env python3
"""Writes the Dataverse test messages in this folder, each context in three formats.

Each context of contexts.py is written as
  NAME.dcjs.json          JSON the way DataContractJsonSerializer writes it,
  NAME.dcs.xml            XML the way DataContractSerializer writes it (text),
  NAME.dcs-binary.msbin1  the same XML as .NET Binary XML ([MC-NBFX], no dictionary,
                          content type application/msbin1).

The JSON and XML writers below mirror the member order, type hints, namespace
declarations and escapes of the two serializers as they appear in real Dataverse bodies
and in ../shared/samples/dataverse (see INDEX.md). The binary form is encoded from the
XML text by an independent encoder: the PyPI package `wcf` (python-wcfbin), pinned below.
Its XML parser builds the record tree and its record classes write the bytes; this
script only chooses, for each text node, the record .NET writes for the value's declared
type (wcf would guess from the text, and turns "1500.50" into a double, for one).

Usage (from the repository root):
  python3 -m venv target/samples-venv
  target/samples-venv/bin/pip install wcf==0.5.5
  target/samples-venv/bin/python tests/samples/dataverse/make-samples.py          # rewrite
  target/samples-venv/bin/python tests/samples/dataverse/make-samples.py --check  # compare
  target/samples-venv/bin/python tests/samples/dataverse/make-samples.py --dense KB DIR

--dense writes contact-dense.{dcjs.json,dcs.xml,dcs-binary.msbin1} to DIR: the
contact-create context with small shared variables of every kind (text, whole numbers,
dates, choices, money, references) added until its JSON form is KB KiB. The benchmarks
(scripts/bench decode) time decoding large messages on them; they are not committed.
"""

import datetime
import importlib.metadata
import io
import json
import logging
import re
import sys
from pathlib import Path
from xml.sax.saxutils import escape

sys.dont_write_bytecode = True  # no __pycache__ among the samples
from contexts import (  # noqa: E402
    CONTACT_CREATE,
    SAMPLES,
    Aliased,
    ChangedEntityTypes,
    Collection,
    Date,
    Decimal,
    Double,
    Entity,
    Guid,
    Money,
    Option,
    Options,
    Ref,
)

WCF_VERSION = "0.5.5"
HERE = Path(__file__).resolve().parent

XRM = "http://schemas.microsoft.com/xrm/2011/Contracts"
XRM71 = "http://schemas.microsoft.com/xrm/7.1/Contracts"
GENERIC = "http://schemas.datacontract.org/2004/07/System.Collections.Generic"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
SERIALIZATION = "http://schemas.microsoft.com/2003/10/Serialization/"
ARRAYS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"

# The member types of the data contracts, for the binary form's typed text records
# (the XML text does not say that `Depth` is an int; the contract does).
INT_MEMBERS = {"Depth", "IsolationMode", "Mode", "Stage", "TotalRecordCount"}
BOOL_MEMBERS = {"IsExecutingOffline", "IsInTransaction", "IsOfflinePlayback", "MoreRecords",
                "TotalRecordCountLimitExceeded"}
DATE_MEMBERS = {"OperationCreatedOn"}


# ---------------------------------------------------------------------------------------
# DataContractJsonSerializer
# ---------------------------------------------------------------------------------------


def json_string(text):
    """A JSON string as .NET's XmlJsonWriter escapes it: `"`, `\\` and `/` with a
    backslash, control characters and UTF-16 surrogates as lowercase `\\uxxxx`."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\/':
            out.append("\\" + char)
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        elif code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def json_type(name):
    return json_string(f"{name}:{XRM}")


def json_object(members, type_name=None):
    parts = [f'"__type":{json_type(type_name)}'] if type_name else []
    parts += [f"{json_string(name)}:{value}" for name, value in members]
    return "{" + ",".join(parts) + "}"


def json_pairs(pairs, value=lambda v: json_value(v)):
    return "[" + ",".join(json_object([("key", json_string(k)), ("value", value(v))]) for k, v in pairs) + "]"


def json_entity(entity, typed):
    return json_object([
        ("Attributes", json_pairs(entity.attributes)),
        ("EntityState", "null"),
        ("FormattedValues", json_pairs(entity.formatted, json_string)),
        ("Id", json_string(entity.id)),
        ("KeyAttributes", "[]"),
        ("LogicalName", json_string(entity.logical_name)),
        ("RelatedEntities", "[]"),
        ("RowVersion", "null"),
    ], "Entity" if typed else None)


def json_ref(ref, typed):
    return json_object([
        ("Id", json_string(ref.id)),
        ("KeyAttributes", "[]"),
        ("LogicalName", json_string(ref.logical_name)),
        ("Name", "null" if ref.name is None else json_string(ref.name)),
        ("RowVersion", "null"),
    ], "EntityReference" if typed else None)


def json_value(value):
    """A value whose declared type is `object`: typed with `__type` where not a primitive."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (Decimal, Double)):
        return str(value)
    if isinstance(value, str):
        return json_string(value)
    if isinstance(value, Date):
        return f'"{value.json()}"'
    if isinstance(value, Money):
        return json_object([("Value", value.value)], "Money")
    if isinstance(value, Option):
        return json_object([("Value", str(value.value))], "OptionSetValue")
    if isinstance(value, Options):
        return "[" + ",".join(json_value(Option(v)) for v in value.values) + "]"
    if isinstance(value, Ref):
        return json_ref(value, typed=True)
    if isinstance(value, Entity):
        return json_entity(value, typed=True)
    if isinstance(value, Collection):
        return json_object([
            ("Entities", "[" + ",".join(json_entity(e, typed=False) for e in value.entities) + "]"),
            ("EntityName", json_string(value.entity_name)),
            ("MinActiveRowVersion", json_string("-1")),
            ("MoreRecords", "false"),
            ("PagingCookie", "null"),
            ("TotalRecordCount", "-1"),
            ("TotalRecordCountLimitExceeded", "false"),
        ], "EntityCollection")
    if isinstance(value, Aliased):
        return json_object([
            ("AttributeLogicalName", json_string(value.attribute)),
            ("EntityLogicalName", json_string(value.entity)),
            ("Value", json_value(value.value)),
        ], "AliasedValue")
    if isinstance(value, ChangedEntityTypes):
        kind = json_string("KeyValuePairOfstringstring:#System.Collections.Generic")
        return "[" + ",".join(
            f'{{"__type":{kind},"key":{json_string(k)},"value":{json_string(v)}}}' for k, v in value.pairs
        ) + "]"
    raise TypeError(f"no JSON form for {value!r}")


def json_context(ctx):
    members = []
    for name, value in ctx.items():
        if name in ("InputParameters", "OutputParameters", "SharedVariables"):
            text = json_pairs(value)
        elif name in ("PreEntityImages", "PostEntityImages"):
            text = json_pairs(value, lambda e: json_entity(e, typed=False))
        elif name == "OwningExtension":
            text = json_ref(value, typed=False)
        elif name == "ParentContext":
            text = "null" if value is None else json_context(value)
        else:
            text = json_value(value)
        members.append((name, text))
    return json_object(members)


# ---------------------------------------------------------------------------------------
# DataContractSerializer (text XML)
# ---------------------------------------------------------------------------------------


def xml_text(text):
    """Element text as .NET's XML text writer escapes it: `&`, `<`, `>`, and `\\r` as a
    character reference (so that a reader does not fold `\\r\\n` into `\\n`)."""
    return escape(text).replace("\r", "&#xD;")


def nil(name):
    return f'<{name} i:nil="true"/>'


def xml_entity_members(entity):
    """An Entity's members; the caller has `a` bound to System.Collections.Generic."""
    attributes = "".join(xml_pair("KeyValuePairOfstringanyType", k, v) for k, v in entity.attributes)
    formatted = "".join(
        f"<KeyValuePairOfstringstring><a:key>{xml_text(k)}</a:key><a:value>{xml_text(v)}</a:value>"
        "</KeyValuePairOfstringstring>"
        for k, v in entity.formatted
    )
    return (
        (f"<Attributes>{attributes}</Attributes>" if attributes else "<Attributes/>")
        + nil("EntityState")
        + (f"<FormattedValues>{formatted}</FormattedValues>" if formatted else "<FormattedValues/>")
        + f"<Id>{entity.id}</Id>"
        + f'<KeyAttributes xmlns:b="{XRM71}"/>'
        + f"<LogicalName>{xml_text(entity.logical_name)}</LogicalName>"
        + "<RelatedEntities/>"
        + nil("RowVersion")
    )


def xml_ref_members(ref, key_attributes):
    return (
        f"<Id>{ref.id}</Id>"
        + key_attributes
        + f"<LogicalName>{xml_text(ref.logical_name)}</LogicalName>"
        + (nil("Name") if ref.name is None else f"<Name>{xml_text(ref.name)}</Name>")
        + nil("RowVersion")
    )


def xml_value(tag, value):
    """Element `tag` holding a value whose declared type is `object` (typed by `i:type`)."""

    def primitive(xsd_type, text, namespace=XSD):
        return f'<{tag} i:type="b:{xsd_type}" xmlns:b="{namespace}">{text}</{tag}>'

    def typed(type_name, content):
        return f'<{tag} i:type="{type_name}">{content}</{tag}>'

    if value is None:
        return nil(tag)
    if isinstance(value, bool):
        return primitive("boolean", "true" if value else "false")
    if isinstance(value, int):
        return primitive("int", str(value))
    if isinstance(value, Guid):
        return primitive("guid", value, SERIALIZATION)
    if isinstance(value, Decimal):
        return primitive("decimal", value)
    if isinstance(value, Double):
        return primitive("double", value)
    if isinstance(value, str):
        return primitive("string", xml_text(value))
    if isinstance(value, Date):
        return primitive("dateTime", value.xml())
    if isinstance(value, Money):
        return typed("Money", f"<Value>{value.value}</Value>")
    if isinstance(value, Option):
        return typed("OptionSetValue", f"<Value>{value.value}</Value>")
    if isinstance(value, Options):
        items = "".join(f"<OptionSetValue><Value>{v}</Value></OptionSetValue>" for v in value.values)
        return typed("OptionSetValueCollection", items)
    if isinstance(value, Ref):
        return typed("EntityReference", xml_ref_members(value, f'<KeyAttributes xmlns:b="{XRM71}"/>'))
    if isinstance(value, Entity):
        return typed("Entity", xml_entity_members(value))
    if isinstance(value, Collection):
        entities = "".join(f"<Entity>{xml_entity_members(e)}</Entity>" for e in value.entities)
        return typed(
            "EntityCollection",
            f"<Entities>{entities}</Entities><EntityName>{value.entity_name}</EntityName>"
            "<MinActiveRowVersion>-1</MinActiveRowVersion><MoreRecords>false</MoreRecords>"
            + nil("PagingCookie")
            + "<TotalRecordCount>-1</TotalRecordCount>"
            "<TotalRecordCountLimitExceeded>false</TotalRecordCountLimitExceeded>",
        )
    if isinstance(value, Aliased):
        return typed(
            "AliasedValue",
            f"<AttributeLogicalName>{value.attribute}</AttributeLogicalName>"
            f"<EntityLogicalName>{value.entity}</EntityLogicalName>" + xml_value("Value", value.value),
        )
    if isinstance(value, ChangedEntityTypes):
        items = "".join(
            f'<b:anyType i:type="a:KeyValuePairOfstringstring"><a:key>{xml_text(k)}</a:key>'
            f"<a:value>{xml_text(v)}</a:value></b:anyType>"
            for k, v in value.pairs
        )
        return f'<{tag} i:type="b:ArrayOfanyType" xmlns:b="{ARRAYS}">{items}</{tag}>'
    raise TypeError(f"no XML form for {value!r}")


def xml_pair(element, key, value):
    return f"<{element}><a:key>{xml_text(key)}</a:key>{xml_value('a:value', value)}</{element}>"


def xml_collection(name, pairs, pair):
    if not pairs:
        return f'<{name} xmlns:a="{GENERIC}"/>'
    return f'<{name} xmlns:a="{GENERIC}">' + "".join(pair(k, v) for k, v in pairs) + f"</{name}>"


def xml_context_members(ctx):
    out = []
    for name, value in ctx.items():
        if name in ("InputParameters", "OutputParameters", "SharedVariables"):
            out.append(xml_collection(name, value, lambda k, v: xml_pair("KeyValuePairOfstringanyType", k, v)))
        elif name in ("PreEntityImages", "PostEntityImages"):
            out.append(xml_collection(
                name,
                value,
                lambda k, e: f"<KeyValuePairOfstringEntitygUGIFE1S><a:key>{xml_text(k)}</a:key>"
                f"<a:value>{xml_entity_members(e)}</a:value></KeyValuePairOfstringEntitygUGIFE1S>",
            ))
        elif name == "OwningExtension":
            key_attributes = f'<KeyAttributes xmlns:a="{XRM71}" xmlns:b="{GENERIC}"/>'
            out.append(f"<{name}>{xml_ref_members(value, key_attributes)}</{name}>")
        elif name == "ParentContext":
            out.append(nil(name) if value is None else f"<{name}>{xml_context_members(value)}</{name}>")
        elif value is None:
            out.append(nil(name))
        elif isinstance(value, bool):
            out.append(f"<{name}>{'true' if value else 'false'}</{name}>")
        elif isinstance(value, Date):
            out.append(f"<{name}>{value.xml()}</{name}>")
        else:
            out.append(f"<{name}>{xml_text(str(value))}</{name}>")
    return "".join(out)


def xml_context(ctx):
    return (
        f'<RemoteExecutionContext xmlns="{XRM}" xmlns:i="{XSI}">'
        + xml_context_members(ctx)
        + "</RemoteExecutionContext>"
    )


# ---------------------------------------------------------------------------------------
# [MC-NBFX] through python-wcfbin
# ---------------------------------------------------------------------------------------


def load_wcf():
    """wcf's modules, with the three shims its 0.5.5 release needs on Python 3."""
    logging.getLogger("wcf").setLevel(logging.ERROR)  # it warns on every decimal
    installed = importlib.metadata.version("wcf")
    if installed != WCF_VERSION:
        sys.exit(f"wcf {installed} is installed; this script is pinned to wcf=={WCF_VERSION}")
    import wcf.records as records
    import wcf.records.attributes
    import wcf.records.base
    import wcf.records.elements
    import wcf.records.text

    # xml2records imports names that records/__init__.py does not export, under two
    # spellings that moved; give it what it asks for.
    for module in (wcf.records.base, wcf.records.text, wcf.records.elements, wcf.records.attributes):
        for name, item in vars(module).items():
            if name.endswith("Record"):
                setattr(records, name, item)
    records.DateTimeTextRecord = wcf.records.text.DatetimeTextRecord
    records.data = records.ms = None  # only used by its disabled date guessing
    sys.modules["wcf.attributes"] = wcf.records.attributes
    import wcf.xml2records as xml2records

    # No dictionary: Service Bus writes with XmlDictionaryWriter.CreateBinaryWriter(stream,
    # null, null, false), so every name and namespace is written inline.
    xml2records.inverted_dict = {}
    return records, wcf.records.text, xml2records


def chars(text_module, text):
    size = len(text.encode("utf-8"))
    if size < 0x100:
        return text_module.Chars8TextRecord(text)
    if size < 0x10000:
        return text_module.Chars16TextRecord(text)
    return text_module.Chars32TextRecord(text)


def int_record(t, value):
    """XmlBinaryNodeWriter.WriteInt32Text/WriteInt64Text: the smallest record."""
    if value == 0:
        return t.ZeroTextRecord()
    if value == 1:
        return t.OneTextRecord()
    for bits, record in ((8, t.Int8TextRecord), (16, t.Int16TextRecord), (32, t.Int32TextRecord)):
        if -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            return record(value)
    return t.Int64TextRecord(value)


def decimal_record(t, text):
    from wcf.datatypes import Decimal as WcfDecimal

    match = re.fullmatch(r"(-?)(\d+)(?:\.(\d+))?", text)
    sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
    magnitude = int(whole + fraction)
    return t.DecimalTextRecord(WcfDecimal(sign == "-", magnitude >> 64, magnitude & (2**64 - 1), len(fraction)))


def double_record(t, text):
    """XmlBinaryNodeWriter.WriteDoubleText: a whole number as an int record, a value a
    float holds exactly as FloatText, else DoubleText."""
    import struct

    value = float(text)
    if value.is_integer() and -(2**63) <= value < 2**63:
        return int_record(t, int(value))
    if struct.unpack("<f", struct.pack("<f", value))[0] == value:
        return t.FloatTextRecord(value)
    return t.DoubleTextRecord(value)


def date_record(t, text):
    instant = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert text.endswith("Z"), f"{text}: the samples hold UTC dates only"
    since_year_one = instant - datetime.datetime(1, 1, 1, tzinfo=datetime.timezone.utc)
    ticks = since_year_one // datetime.timedelta(microseconds=1) * 10
    return t.DatetimeTextRecord(ticks, 1)  # Kind Utc


XSD_TYPES = {"b:int": "int", "b:boolean": "bool", "b:decimal": "decimal", "b:double": "double",
             "b:dateTime": "date", "b:string": "string", "b:guid": "string"}


def declared_type(element, parent):
    """The type the data contract gives the text of `element` (inside `parent`)."""
    i_type = element.attr.get("i:type")
    if i_type is not None:
        return XSD_TYPES[i_type]
    name = element.name
    if name == "Value":
        parent_type = parent.attr.get("i:type") if parent is not None else None
        if parent_type == "Money":
            return "decimal"
        if parent_type == "OptionSetValue" or (parent is not None and parent.name == "OptionSetValue"):
            return "int"
    if name in INT_MEMBERS:
        return "int"
    if name in BOOL_MEMBERS:
        return "bool"
    if name in DATE_MEMBERS:
        return "date"
    return "string"


def encode(xml, wcf_modules):
    records, t, xml2records = wcf_modules

    class Parser(xml2records.XMLParser):
        """wcf's parser, with every text node kept as its exact string; types come later."""

        def _parse_data(self, data, is_cdata=False):
            return chars(t, data)

        def handle_entityref(self, name):
            # wcf 0.5.5 looks entities up in Python 2's htmlentitydefs; XML has these five.
            self.handle_data({"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}[name])

    tree = Parser.parse(xml)

    def name_of(element):
        return f"{element.prefix}:{element.name}" if getattr(element, "prefix", None) else element.name

    def retype(element, parent):
        element.attr = {}
        for attribute in element.attributes:
            if isinstance(getattr(attribute, "value", None), records.base.Text):
                key = f"{attribute.prefix}:{attribute.name}" if getattr(attribute, "prefix", None) else attribute.name
                element.attr[key] = str(attribute.value.value)
                if key == "i:nil":
                    assert attribute.value.value == "true"
                    attribute.value = t.TrueTextRecord()
        for i, child in enumerate(element.childs):
            if isinstance(child, records.base.Element):
                retype(child, element)
            else:
                text = child.value
                assert text.strip() == text and text, f"<{name_of(element)}>: text with outer spaces"
                kind = declared_type(element, parent)
                element.childs[i] = {
                    "string": lambda: chars(t, text),
                    "int": lambda: int_record(t, int(text)),
                    "bool": lambda: {"true": t.TrueTextRecord, "false": t.FalseTextRecord}[text](),
                    "decimal": lambda: decimal_record(t, text),
                    "double": lambda: double_record(t, text),
                    "date": lambda: date_record(t, text),
                }[kind]()

    for root in tree:
        retype(root, None)
    return records.dump_records(tree)


def read_back(body, wcf_modules):
    """Reads a binary body with wcf's own decoder and checks that it writes the same bytes."""
    records, _, _ = wcf_modules
    tree = records.base.Record.parse(io.BytesIO(body))
    return len(tree) == 1 and records.dump_records(tree) == body


# ---------------------------------------------------------------------------------------


def dense_contact(kb):
    """CONTACT_CREATE with shared variables of every kind until its JSON is `kb` KiB."""
    ctx = dict(CONTACT_CREATE)
    variables = list(ctx["SharedVariables"])
    kinds = (
        lambda n: f"text value {n}",
        lambda n: n,
        lambda n: Date(f"2026-01-01T00:00:{n % 60:02d}Z"),
        lambda n: Option(100_000_000 + n),
        lambda n: Money(f"{n}.25"),
        lambda n: Ref("account", f"6d81597f-0f9f-e711-8122-{n:012x}", f"Account {n}"),
    )
    while len(json_context(ctx).encode("utf-8")) < kb * 1024:
        # A batch at a time: rendering the whole context per variable is quadratic.
        for _ in range(60):
            n = len(variables)
            variables.append((f"var{n}", kinds[n % len(kinds)](n)))
        ctx["SharedVariables"] = variables
    return {"contact-dense": ctx}


def outputs(samples=SAMPLES):
    wcf_modules = load_wcf()
    for name, ctx in samples.items():
        body = json_context(ctx)
        json.loads(body)  # well-formed
        xml = xml_context(ctx)
        binary = encode(xml, wcf_modules)
        assert read_back(binary, wcf_modules), f"{name}: wcf does not read its own bytes back"
        if name == "contact-create":
            # Tests cut this one's text at arbitrary bytes.
            assert body.isascii() and xml.isascii(), f"{name} must be ASCII"
        yield f"{name}.dcjs.json", body.encode("utf-8")
        yield f"{name}.dcs.xml", xml.encode("utf-8")
        yield f"{name}.dcs-binary.msbin1", binary


def main():
    if sys.argv[1:2] == ["--dense"]:
        kb, folder = int(sys.argv[2]), Path(sys.argv[3])
        folder.mkdir(parents=True, exist_ok=True)
        for file, content in outputs(dense_contact(kb)):
            (folder / file).write_bytes(content)
        return
    check = "--check" in sys.argv[1:]
    stale = []
    for file, content in outputs():
        path = HERE / file
        if check:
            if not path.is_file() or path.read_bytes() != content:
                stale.append(file)
        else:
            path.write_bytes(content)
            print(f"wrote {file} ({len(content)} bytes)")
    if stale:
        sys.exit(f"out of date: {', '.join(stale)} (run without --check)")


if __name__ == "__main__":
    main()
