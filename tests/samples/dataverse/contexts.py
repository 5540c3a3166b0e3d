"""The three test contexts, as data: what make-samples.py writes in three formats.

The classes are the Microsoft.Xrm.Sdk value types as far as the formats see them; the
contexts use made-up ids and values (none taken from ../shared/samples/dataverse).
"""

import datetime
# ---------------------------------------------------------------------------------------
# The values a context holds (the Microsoft.Xrm.Sdk types, as far as the formats see them)
# ---------------------------------------------------------------------------------------


class Guid(str):
    """A System.Guid: plain text in JSON, `b:guid` in XML."""


class Decimal(str):
    """A System.Decimal, kept as its exact text (scale included)."""


class Double(str):
    """A System.Double, kept as the text .NET's round-trip format gives."""


class Date:
    """A System.DateTime of Kind Utc, to the millisecond."""

    def __init__(self, iso):
        self.value = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))

    def json(self):
        millis = (self.value - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(
            milliseconds=1
        )
        return f"\\/Date({millis})\\/"

    def xml(self):
        text = self.value.strftime("%Y-%m-%dT%H:%M:%S")
        fraction = f"{self.value.microsecond:06d}0".rstrip("0")
        return f"{text}.{fraction}Z" if fraction else f"{text}Z"


class Money:
    def __init__(self, value):
        self.value = Decimal(value)


class Option:
    def __init__(self, value):
        self.value = value


class Options:
    """An OptionSetValueCollection: a multi-select choice."""

    def __init__(self, *values):
        self.values = values


class Ref:
    def __init__(self, logical_name, id, name=None):
        self.logical_name, self.id, self.name = logical_name, Guid(id), name


class Entity:
    def __init__(self, logical_name, id, attributes, formatted=()):
        self.logical_name, self.id = logical_name, Guid(id)
        self.attributes, self.formatted = attributes, formatted


class Collection:
    """An EntityCollection of one entity type, all records on one page."""

    def __init__(self, entity_name, entities):
        self.entity_name, self.entities = entity_name, entities


class Aliased:
    def __init__(self, entity, attribute, value):
        self.entity, self.attribute, self.value = entity, attribute, value


class ChangedEntityTypes:
    """The `ChangedEntityTypes` shared variable: a list of KeyValuePair<string, string>."""

    def __init__(self, *pairs):
        self.pairs = pairs


def context(**members):
    """A RemoteExecutionContext: every data member, in the serializers' (ordinal) order."""
    defaults = {
        "InitiatingUserAgent": None,
        "InitiatingUserAzureActiveDirectoryObjectId": Guid("00000000-0000-0000-0000-000000000000"),
        "IsExecutingOffline": False,
        "IsOfflinePlayback": False,
        "IsolationMode": 1,
        "OutputParameters": [],
        "ParentContext": None,
        "PostEntityImages": [],
        "PreEntityImages": [],
        "RequestId": None,
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "UserAzureActiveDirectoryObjectId": Guid("00000000-0000-0000-0000-000000000000"),
    }
    merged = {**defaults, **members}
    return dict(sorted(merged.items(), key=lambda item: item[0].encode()))


# ---------------------------------------------------------------------------------------
# The contexts
# ---------------------------------------------------------------------------------------

ORG = Guid("9a3c5e71-2b4d-4f60-8e19-c7a2d4b6f803")
BUSINESS_UNIT = Guid("3e8b0c4f-71d2-4a95-b6e3-0f5a9c2d7e14")
USER = Guid("5f2e8a1c-93b7-4d06-a4c8-e1b7d3f90a26")
STEP = Guid("c41d7e93-5a08-4b2f-9e6c-83f0a1b5d247")
ACCOUNT = "b7e41f02-6c3a-4d85-9f17-2a0c8e5d4b91"
CONTACT = "e2a96c58-0d4f-4b73-8a1e-5c7f3b9d2064"
EMAIL = "71c0f3a8-4e9b-4d26-b5a7-0e3c8d1f6a59"


def step():
    return Ref("sdkmessageprocessingstep", STEP)


def user(name=None):
    return Ref("systemuser", USER, name)


ACCOUNT_NAME = 'Fabrikam & Söhne "Nord" <Großhandel>'

ACCOUNT_UPDATE = context(
    BusinessUnitId=BUSINESS_UNIT,
    CorrelationId=Guid("0b6f2d94-8c1e-4a37-b5d0-93e7a4c12f68"),
    Depth=1,
    InitiatingUserAgent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) sagahost-tests/1.0",
    InitiatingUserId=USER,
    InputParameters=[
        ("Target", Entity("account", ACCOUNT, [
            ("name", ACCOUNT_NAME),
            ("accountid", Guid(ACCOUNT)),
            ("accountnumber", "FAB-00042"),
            ("description", "Line one\r\nLine two\tindented \\ backslash / slash 😀 end"),
            ("revenue", Money("2500000.75")),
            ("creditlimit", Money("0.00")),
            ("industrycode", Option(7)),
            ("customertypecode", Option(3)),
            ("numberofemployees", 1250),
            ("new_sitecount", 70000),
            ("new_healthscore", -15),
            ("donotphone", True),
            ("creditonhold", False),
            ("address1_latitude", Double("52.5163")),
            ("address1_longitude", Double("13.3777")),
            ("exchangerate", Decimal("1.0000000000")),
            ("new_discountrate", Decimal("-0.0125")),
            ("modifiedon", Date("2024-03-18T09:41:27.357Z")),
            ("modifiedby", user()),
            ("primarycontactid", Ref("contact", CONTACT, "Aoife O'Brien")),
            ("ownerid", user("Priya Raman")),
            ("parentaccountid", None),
        ], formatted=[
            ("revenue", "€2,500,000.75"),
            ("creditlimit", "€0.00"),
            ("industrycode", "Wholesale"),
            ("customertypecode", "Customer"),
            ("numberofemployees", "1,250"),
            ("donotphone", "Do Not Allow"),
            ("creditonhold", "No"),
        ])),
        ("SuppressDuplicateDetection", False),
    ],
    IsInTransaction=True,
    MessageName="Update",
    Mode=0,
    OperationCreatedOn=Date("2024-03-18T09:41:27.41Z"),
    OperationId=Guid("5d21e8a7-3f90-4c6b-8d14-a0b7e2c95f31"),
    OrganizationId=ORG,
    OrganizationName="fabrikam-test",
    OwningExtension=step(),
    ParentContext=context(
        BusinessUnitId=BUSINESS_UNIT,
        CorrelationId=Guid("0b6f2d94-8c1e-4a37-b5d0-93e7a4c12f68"),
        Depth=1,
        InitiatingUserId=USER,
        InputParameters=[
            ("Target", Entity("account", ACCOUNT, [
                ("name", ACCOUNT_NAME),
                ("accountid", Guid(ACCOUNT)),
            ])),
            ("SuppressDuplicateDetection", False),
        ],
        IsInTransaction=True,
        MessageName="Update",
        Mode=0,
        OperationCreatedOn=Date("2024-03-18T09:41:27.41Z"),
        OperationId=Guid("5d21e8a7-3f90-4c6b-8d14-a0b7e2c95f31"),
        OrganizationId=ORG,
        OrganizationName="fabrikam-test",
        OwningExtension=step(),
        PrimaryEntityId=Guid(ACCOUNT),
        PrimaryEntityName="account",
        RequestId=Guid("a8d3f61e-27c4-4b90-8e5a-1f6c0d9b3e72"),
        SharedVariables=[
            ("ChangedEntityTypes", ChangedEntityTypes(("account", "Update"), ("contact", "Update"))),
        ],
        Stage=30,
        UserId=USER,
    ),
    PostEntityImages=[
        ("PostImage", Entity("account", ACCOUNT, [
            ("name", ACCOUNT_NAME),
            ("revenue", Money("2500000.75")),
            ("statecode", Option(0)),
        ], formatted=[("statecode", "Active"), ("revenue", "€2,500,000.75")])),
    ],
    PreEntityImages=[
        ("PreImage", Entity("account", ACCOUNT, [
            ("name", "Fabrikam Nord"),
            ("revenue", Money("2250000.00")),
            ("industrycode", Option(7)),
            ("modifiedon", Date("2023-11-02T16:05:00Z")),
        ], formatted=[("revenue", "€2,250,000.00"), ("industrycode", "Wholesale")])),
    ],
    PrimaryEntityId=Guid(ACCOUNT),
    PrimaryEntityName="account",
    RequestId=Guid("a8d3f61e-27c4-4b90-8e5a-1f6c0d9b3e72"),
    SharedVariables=[
        ("IsAutoTransact", True),
        ("new_source", "integration-tests"),
        ("new_batchsize", 25),
        ("ChangedEntityTypes", ChangedEntityTypes(("account", "Update"))),
    ],
    Stage=40,
    UserId=USER,
)

CONTACT_CREATE = context(
    BusinessUnitId=BUSINESS_UNIT,
    CorrelationId=Guid("6c9e1a37-d4b2-4f85-a0e3-7b5d2c8f1e40"),
    Depth=1,
    InitiatingUserAgent="PowerApps/3.24031.15",
    InitiatingUserId=USER,
    InputParameters=[
        ("Target", Entity("contact", CONTACT, [
            ("firstname", "Aoife"),
            ("lastname", "O'Brien"),
            ("fullname", "Aoife O'Brien"),
            ("emailaddress1", "aoife.obrien@fabrikam.example"),
            ("contactid", Guid(CONTACT)),
            ("birthdate", Date("1988-11-05T00:00:00Z")),
            ("annualincome", Money("84000.00")),
            ("gendercode", Option(2)),
            ("familystatuscode", Option(1)),
            ("new_preferredchannels", Options(100000000, 100000002)),
            ("numberofchildren", 0),
            ("donotemail", False),
            ("new_loyaltyscore", Decimal("12.3400")),
            ("address1_longitude", Double("-6.2603")),
            ("parentcustomerid", Ref("account", ACCOUNT, "Fabrikam Nord")),
            ("createdon", Date("2024-03-19T14:02:55Z")),
            ("createdby", user("Priya Raman")),
            ("ownerid", user("Priya Raman")),
            ("statecode", Option(0)),
        ], formatted=[
            ("annualincome", "$84,000.00"),
            ("gendercode", "Female"),
            ("familystatuscode", "Single"),
            ("new_preferredchannels", "Email; SMS"),
            ("donotemail", "Allow"),
            ("statecode", "Active"),
        ])),
    ],
    IsInTransaction=False,
    MessageName="Create",
    Mode=1,
    OperationCreatedOn=Date("2024-03-19T14:02:56.08Z"),
    OperationId=Guid("f03b7c2d-98e4-4a61-b2d7-4e1a9c6f8b05"),
    OrganizationId=ORG,
    OrganizationName="fabrikam-test",
    OutputParameters=[("id", Guid(CONTACT))],
    OwningExtension=step(),
    PostEntityImages=[
        ("AsynchronousStepPrimaryName", Entity("contact", CONTACT, [
            ("fullname", "Aoife O'Brien"),
            ("contactid", Guid(CONTACT)),
        ])),
    ],
    PrimaryEntityId=Guid(CONTACT),
    PrimaryEntityName="contact",
    SharedVariables=[
        ("IsAutoTransact", False),
        ("ChangedEntityTypes", ChangedEntityTypes(("contact", "Create"))),
    ],
    Stage=40,
    UserId=USER,
)


def party(id, mask, target, address):
    return Entity("activityparty", id, [
        ("partyid", target),
        ("participationtypemask", Option(mask)),
        ("addressused", address),
    ])


EMAIL_CREATE = context(
    BusinessUnitId=BUSINESS_UNIT,
    CorrelationId=Guid("2f7a0e5c-b1d8-4c39-96e2-d5a3f7b0c184"),
    Depth=1,
    InitiatingUserId=USER,
    InputParameters=[
        ("Target", Entity("email", EMAIL, [
            ("subject", "Re: Order #4711 – delivery <urgent> & \"confirmed\""),
            ("activityid", Guid(EMAIL)),
            ("directioncode", True),
            ("prioritycode", Option(2)),
            ("new_topics", Options(1, 3, 4)),
            ("actualdurationminutes", 30),
            ("scheduledend", Date("2024-03-22T17:30:00Z")),
            ("regardingobjectid", Ref("account", ACCOUNT, ACCOUNT_NAME)),
            ("from", Collection("activityparty", [
                party("4b8e2f0a-6d13-4c57-a9e0-b2f5d8c31a76", 1, user("Priya Raman"), "priya.raman@fabrikam.example"),
            ])),
            ("to", Collection("activityparty", [
                party("8d0c5a27-e3f6-4b19-b7d4-5a2e9f1c0b63", 2, Ref("contact", CONTACT, "Aoife O'Brien"),
                      "aoife.obrien@fabrikam.example"),
                party("a6f19d3c-0b72-4e8a-95c1-d7e4b3a20f58", 2, Ref("account", ACCOUNT, ACCOUNT_NAME),
                      "orders@fabrikam.example"),
            ])),
            ("regarding.accountnumber", Aliased("account", "accountnumber", "FAB-00042")),
            ("regarding.numberofemployees", Aliased("account", "numberofemployees", 1250)),
        ], formatted=[
            ("prioritycode", "High"),
            ("new_topics", "Billing; Delivery; Returns"),
            ("directioncode", "Outgoing"),
        ])),
    ],
    IsInTransaction=False,
    MessageName="Create",
    Mode=1,
    OperationCreatedOn=Date("2024-03-20T08:15:03Z"),
    OperationId=Guid("c6e2a9f4-71b3-4d08-8a5f-e9d0b4c7132a"),
    OrganizationId=ORG,
    OrganizationName="fabrikam-test",
    OutputParameters=[("id", Guid(EMAIL))],
    OwningExtension=step(),
    PostEntityImages=[
        ("AsynchronousStepPrimaryName", Entity("email", EMAIL, [
            ("subject", "Re: Order #4711 – delivery <urgent> & \"confirmed\""),
            ("activityid", Guid(EMAIL)),
        ])),
    ],
    PrimaryEntityId=Guid(EMAIL),
    PrimaryEntityName="email",
    SharedVariables=[
        ("IsAutoTransact", False),
        ("ChangedEntityTypes", ChangedEntityTypes(("email", "Create"), ("activityparty", "Create"))),
    ],
    Stage=40,
    UserId=USER,
)

SAMPLES = {
    "account-update": ACCOUNT_UPDATE,
    "contact-create": CONTACT_CREATE,
    "email-create": EMAIL_CREATE,
}
