"""WTForms forms. Action forms are built from a transition's declared fields."""

from __future__ import annotations

from typing import get_args

from flask_babel import lazy_gettext, lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (BooleanField, DateField, EmailField, IntegerField, PasswordField, RadioField, SelectField,
                     SelectMultipleField, StringField, TextAreaField)
from wtforms.validators import DataRequired, Email, InputRequired, Length, Optional, Regexp, ValidationError
from wtforms.fields.choices import SelectChoice
from wtforms.widgets import CheckboxInput, ListWidget

from .. import queries
from ..classification.descriptor import Descriptor
from ..db import get_session
from ..domain import NotificationDelivery, Severity
from ..schemas import LINE_MAX, NOTE_MAX, SHA256_PATTERN, IncidentIn, ModelVersionIn, SubmissionIn, max_length
from ..workflow import SUBMISSIONS, FieldSpec, Transition
from .vocabulary import lazy_words


def opts(pairs) -> list[SelectChoice]:
    """(value, label) pairs as WTForms choices."""
    return [SelectChoice(value, label) for value, label in pairs]


#: The first option of a choice with consequences: nothing is chosen until the person chooses.
CHOOSE = ("", _l("— choose —"))


def choose_first(pairs) -> list[SelectChoice]:
    """Choices that start empty, so that no decision, class, maturity or severity is pre-selected."""
    return opts([CHOOSE, *pairs])


def must_choose(label) -> InputRequired:
    """Refuses the empty "choose…" option with a message naming the field."""
    return InputRequired(message=_l("%(field)s: choose one.", field=label))


def chosen_select(label, pairs, **kwargs) -> SelectField:
    """A select with consequences: it starts on "— choose —" and is refused until something is chosen."""
    return SelectField(label, choices=choose_first(pairs), validators=[must_choose(label)], **kwargs)


class LoginForm(FlaskForm):
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Email(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])


class ConfirmForm(FlaskForm):
    """A form with only its CSRF token (logout, actions without fields)."""


def _open_meeting_choices() -> list[SelectChoice]:
    """The meetings a case can be put on, read when the form is built or checked (the form class is cached)."""
    return choose_first([(str(m.id), f"{m.title} — {m.scheduled_for:%Y-%m-%d %H:%M} UTC · {lazy_words(m.status)}")
                         for m in queries.open_meetings(get_session())])


def _field(spec: FieldSpec):
    """The form field of a declared one; its label and help, marked in :mod:`governance.workflow`, are translated
    when shown (lazily: the form class is built once, for every language)."""
    required = [InputRequired()] if spec.required else [Optional()]
    kwargs = {"description": lazy_gettext(spec.help) if spec.help else ""}
    label = lazy_gettext(spec.label)
    if spec.kind == "textarea" or spec.kind == "json":
        return TextAreaField(label, validators=required + ([Length(max=spec.limit)] if spec.limit else []), **kwargs)
    if spec.kind == "choice":  # starts empty: a pathway, a class or a vote is chosen, never defaulted
        return SelectField(label, choices=choose_first([(c, lazy_words(c)) for c in spec.choices]),
                           validators=[must_choose(label)] if spec.required else [Optional()], **kwargs)
    if spec.kind == "email":
        return EmailField(label, validators=required + [Email(), Length(max=spec.limit)], **kwargs)
    if spec.kind == "password":
        return PasswordField(label, validators=required + [Length(max=spec.limit)], **kwargs)
    if spec.kind == "bool":
        return BooleanField(label, **kwargs)
    if spec.kind == "int":
        return IntegerField(label, validators=required, **kwargs)
    if spec.kind == "meeting":  # chosen from the meetings still open, never typed as an id
        return SelectField(label, choices=_open_meeting_choices,
                           validators=[must_choose(label)] if spec.required else [Optional()], **kwargs)
    if spec.kind == "date":
        return DateField(label, validators=required, **kwargs)
    return StringField(label, validators=required + [Length(max=spec.limit or LINE_MAX)], **kwargs)


_CACHE: dict[tuple, type] = {}


def action_form_class(transition: Transition) -> type[FlaskForm]:
    key = (transition.event, transition.fields)
    if key not in _CACHE:
        attrs = {spec.name: _field(spec) for spec in transition.fields}
        _CACHE[key] = type(f"{transition.event.title().replace('_', '')}Form", (FlaskForm,), attrs)
    return _CACHE[key]


def form_data(form: FlaskForm, transition: Transition) -> dict:
    """The submitted values in the shape the engine expects (dates as ISO text, empty optional fields dropped)."""
    data = {}
    for spec in transition.fields:
        value = form[spec.name].data
        if value is None or value == "":
            continue
        data[spec.name] = value.isoformat() if spec.kind == "date" else value
    return data


# --- deployments and model versions ----------------------------------------------------------------


SHA256 = Regexp(SHA256_PATTERN, message=_l("A sha256 digest is 64 hexadecimal characters."))


def declared(event: str, name: str) -> Length:
    """The length the workflow declares for a field of ``event`` (the engine checks the same one)."""
    return Length(max=SUBMISSIONS.declared_field(event, name).limit)


def limit(name: str) -> Length:
    """The model-version input's declared length (governance.schemas: one source for form, API and column)."""
    return Length(max=max_length(ModelVersionIn, name))


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _pairs(field: str) -> list[tuple[str, str]]:
    annotation = Descriptor.model_fields[field].annotation
    inner = get_args(annotation)[0] if getattr(annotation, "__origin__", None) is list else annotation
    return [(value, lazy_words(value)) for value in get_args(inner)]


def _choices(field: str) -> list[SelectChoice]:
    return opts(_pairs(field))


YES_NO_PAIRS = [("false", _l("no")), ("true", _l("yes"))]


def _yes_no(label, **kwargs) -> SelectField:
    """A descriptor's yes/no question: every answer changes the classification, so none is pre-selected."""
    return chosen_select(label, YES_NO_PAIRS, **kwargs)


def _descriptor_select(field: str, label, **kwargs) -> SelectField:
    return chosen_select(label, _pairs(field), **kwargs)
BOOL_FIELDS = ("outputs_used_for_diagnosis_or_treatment", "medical_purpose", "assisted_decision_making",
               "time_critical", "hcp_can_independently_review_basis", "generative", "public_facing", "deidentified",
               "anonymised", "cross_border_transfer", "human_genetic_resources", "issues_prescriptions",
               "on_premises", "continuous_learning")


class DescriptorForm(FlaskForm):
    """The deployment descriptor as a guided form; every field says what it means for classification."""

    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=max_length(Descriptor, "name"))])
    scenario = _descriptor_select("scenario", _l("Scenario"),
                                  description=_l("The closest scenario of seed 003's Table 1; 'other' if none fits."))
    intended_use = TextAreaField(_l("Intended use"),
                                 validators=[DataRequired(), Length(max=max_length(Descriptor, "intended_use"))],
                                 description=_l("What it does, for whom, and who acts on its output."))
    users = MultiCheckboxField(_l("Users"), choices=_choices("users"), validators=[DataRequired()])
    output_visible_to = MultiCheckboxField(_l("Output visible to"), choices=_choices("output_visible_to"),
                                           validators=[DataRequired()],
                                           description=_l("Patient- or public-facing output changes the US and "
                                                          "EU status and sends the case to the full board."))
    outputs_used_for_diagnosis_or_treatment = _yes_no(
        _l("Outputs used for diagnosis or treatment"),
        description=_l("NMPA step A1: a medical purpose."))
    medical_purpose = _yes_no(
        _l("Intended medical purpose"),
        description=_l("Diagnosis, prevention, monitoring, prediction or treatment of disease. No for research, "
                       "hospital administration and wellness or health-management tools: images or signals alone "
                       "then do not make it a device (FDA, EU MDR, NMPA step A1)."))
    input_data = MultiCheckboxField(_l("Input data"), choices=_choices("input_data"), validators=[DataRequired()],
                                    description=_l("Images, physiological signals, IVD and wearable data are "
                                                   "medical-device data (NMPA step A2)."))
    assisted_decision_making = _yes_no(_l("Assisted decision-making"),
                                       description=_l("Identifies lesions, suggests a diagnosis, a treatment or "
                                                          "a medication."))
    algorithm_maturity = _descriptor_select("algorithm_maturity", _l("Algorithm maturity"),
                                            description=_l("High: this product type is marketed and proven safe and "
                                                    "effective."))
    time_critical = _yes_no(_l("Time-critical use"))
    hcp_can_independently_review_basis = _yes_no(_l("Professionals can independently review the basis"))
    generative = _yes_no(_l("Generative"))
    public_facing = _yes_no(
        _l("Offered to the public"),
        description=_l("Yes also for the hospital's own patients using it through the hospital's app, website or "
                       "public account: they are the public under the Generative AI Measures (Art. 2). No only for "
                       "use by staff inside the hospital."))
    personal_information = _descriptor_select("personal_information", _l("Personal information"),
                                              description=_l("Medical health data is sensitive personal information "
                                                      "(PIPL)."))
    deidentified = _yes_no(_l("De-identified"))
    anonymised = _yes_no(
        _l("Anonymised"),
        description=_l("No person can be identified and the data cannot be restored (PIPL Art. 73(4)). "
                       "De-identified (pseudonymised) data is still personal information and needs consent."))
    cross_border_transfer = _yes_no(_l("Cross-border transfer"))
    human_genetic_resources = _yes_no(
        _l("Human genetic resources"),
        description=_l("Genetic information such as genes and genomes. Clinical, imaging, protein and metabolic data "
                       "alone are not human genetic resources information (Implementing Rules 2023, Art. 2)."))
    autonomy = _descriptor_select("autonomy", _l("Autonomy"),
                                  description=_l("Assistive: a clinician confirms each output. Informs directly: "
                                                 "answers patients or the public without a clinician confirming "
                                                 "each answer, with information or triage advice only; a physician "
                                                 "still diagnoses and prescribes. High: decides or acts without a "
                                                 "clinician confirming each output, e.g. issues a diagnosis, report "
                                                 "or prescription (prohibited when it replaces the physician)."))
    issues_prescriptions = _yes_no(_l("Issues prescriptions without a physician"),
                                   description=_l("Prohibited (NHC internet diagnosis rules)."))
    severity_if_wrong = _descriptor_select("severity_if_wrong", _l("Severity if wrong"))
    on_premises = _yes_no(_l("On premises"))
    continuous_learning = _yes_no(_l("Continuous learning"))

    def descriptor(self) -> dict:
        data = {name: self[name].data for name in Descriptor.model_fields}
        for name in BOOL_FIELDS:
            data[name] = data[name] == "true"
        return data

    def fill(self, descriptor: dict) -> None:
        # a descriptor stored before a field existed shows that field's default, as the classifier reads it
        defaults = {name: info.default for name, info in Descriptor.model_fields.items() if not info.is_required()}
        for name, value in {**defaults, **descriptor}.items():
            if name in self:
                self[name].data = ("true" if value else "false") if name in BOOL_FIELDS else value


class AmendmentForm(DescriptorForm):
    """The descriptor of an approved deployment, changed: an amendment for the committee, with what changes and why."""

    summary = TextAreaField(_l("What changes and why (for the committee)"),
                            validators=[Optional(), Length(max=max_length(SubmissionIn, "summary"))])


#: The demo backend's endpoints (its accuracies are governance.audit.backends.DEMO_ACCURACY): offered on the
#: version form in demo mode only, where they need no server; elsewhere the endpoint check refuses them.
DEMO_ENDPOINTS = opts([("demo://good", _l("a demo model that passes its audit")),
                       ("demo://weak", _l("a weak demo model, held at the audit gate")),
                       ("demo://regressed", _l("a demo model worse than demo://good, for a change that regresses")),
                       ("demo://hazardous", _l("a demo model that answers one simulated clinical query in "
                                               "twenty dangerously, for a safety simulation that holds"))])


def demo_endpoint_choices(settings) -> list[SelectChoice]:
    """The endpoints the version form offers besides what the submitter types: the demo ones, in demo mode."""
    return DEMO_ENDPOINTS if settings.demo_mode else []


class VersionForm(FlaskForm):
    """A model version submitted for review: initial deployment or an update (change control)."""

    kind = chosen_select(_l("Kind of review"), [("initial", _l("initial deployment")),
                                                ("change", _l("change (model update)"))])
    version_label = StringField(_l("Version label"), validators=[DataRequired(), limit("version_label")])
    base_model = StringField(_l("Base model"), validators=[DataRequired(), limit("base_model")])
    architecture = StringField(_l("Architecture"), validators=[Optional(), limit("architecture")])
    weights_digest = StringField(_l("Weights digest (sha256 over the model files)"), validators=[DataRequired(), SHA256],
                                 description=_l("`govern submit` computes it from the model folder."))
    tokenizer_digest = StringField(_l("Tokenizer and chat-template digest"), validators=[Optional(), SHA256])
    system_prompt_digest = StringField(_l("System-prompt digest"), validators=[Optional(), SHA256])
    quantization = StringField(_l("Quantization"), validators=[Optional(), limit("quantization")])
    endpoint = StringField(
        _l("Serving endpoint or local path"), validators=[DataRequired(), limit("endpoint")],
        description=_l("The base URL of an OpenAI-compatible server the audit asks, e.g. https://llm.example.org/v1 "
                       "(where it answers /v1/models and /v1/chat/completions). The institution allows public "
                       "addresses and, on its allow-list, its own hosts and networks (settings endpoint_allow_hosts "
                       "and endpoint_allow_networks; ask an administrator). Or the absolute path of a model folder "
                       "this instance serves models from, for in-process vLLM."))
    served_model_id = StringField(_l("Served model id"), validators=[Optional(), limit("served_model_id")])
    finetune_data_categories = StringField(_l("Fine-tuning data categories (comma-separated)"),
                                           validators=[Optional(), Length(max=500)])
    finetune_data_summary = TextAreaField(_l("Fine-tuning data summary"),
                                          validators=[Optional(), limit("finetune_data_summary")])
    change_summary = TextAreaField(_l("Change summary against the approved version"),
                                   validators=[Optional(), limit("change_summary")])
    summary = TextAreaField(_l("Summary for the committee"),
                            validators=[Optional(), Length(max=max_length(SubmissionIn, "summary"))])
    submit_now = BooleanField(_l("Submit for review now"), default=True)

    def validate_change_summary(self, field) -> None:
        if self.kind.data == "change" and not (field.data or "").strip():
            raise ValidationError(_l("A change needs its change summary."))

    def fill_from(self, approved) -> None:
        """Start a new version from the approved one: what usually stays (base model, architecture, serving,
        quantization, fine-tuning data) is pre-filled; the version label and every digest are left empty, since they
        must be those of the new files (a stale digest copied over would hide a change)."""
        for name in ("base_model", "architecture", "quantization", "endpoint",
                     "served_model_id", "finetune_data_summary"):
            self[name].data = getattr(approved, name) or ""
        self.finetune_data_categories.data = ", ".join(approved.finetune_data_categories or [])

    def version_fields(self) -> dict:
        """The model-version input as the operation takes it (validated there against the same schema)."""
        fields = {name: self[name].data or "" for name in ModelVersionIn.model_fields
                  if name in self and name != "finetune_data_categories"}
        fields["finetune_data_categories"] = [c.strip() for c in (self.finetune_data_categories.data or "").split(",")
                                              if c.strip()]
        return fields


# --- review ----------------------------------------------------------------------------------------
class DeclarationForm(FlaskForm):
    has_conflict = chosen_select(_l("Do you have a conflict of interest in this case?"),
                                 [("false", _l("No")), ("true", _l("Yes — I recuse myself"))])
    # no Optional(): it would stop the chain on an empty statement before validate_statement says it is required
    statement = TextAreaField(_l("Statement"), validators=[declared("declare_conflict", "statement")],
                              description=_l("Required when you declare a conflict: what it is."))

    def validate_statement(self, field) -> None:
        if self.has_conflict.data == "true" and not (field.data or "").strip():
            raise ValidationError(_l("A statement is required when you declare a conflict: say what the conflict "
                                     "is."))


class CorrectionForm(FlaskForm):
    """The chair's correction of a member's conflict declaration (recorded as a new declaration row)."""

    member = SelectField(_l("Member"), choices=[], validators=[InputRequired()])
    has_conflict = chosen_select(_l("The member's standing on this case"),
                                 [("true", _l("Has a conflict of interest: recused")),
                                  ("false", _l("No conflict of interest: reviews and votes"))])
    statement = TextAreaField(_l("Statement"), validators=[declared("correct_conflict_declaration", "statement")],
                              description=_l("Required when the member has a conflict: what it is."))
    reason = TextAreaField(_l("Reason for the correction"),
                           validators=[InputRequired(message=_l("Give the reason for the correction.")),
                                       declared("correct_conflict_declaration", "reason")],
                           description=_l("Kept with the declaration and in the event log."))

    def validate_statement(self, field) -> None:
        if self.has_conflict.data == "true" and not (field.data or "").strip():
            raise ValidationError(_l("A statement is required when the member has a conflict: say what the "
                                     "conflict is."))

    def validate_reason(self, field) -> None:
        if not (field.data or "").strip():
            raise ValidationError(_l("Give the reason for the correction."))


def checklist_form_class(items, lang: str) -> type[FlaskForm]:
    """A form with one answer and one comment per applicable checklist item ("no" needs a comment)."""
    attrs: dict = {}
    for item in items:
        choices = opts([("yes", _l("yes")), ("no", _l("no"))] + ([("na", _l("not applicable"))] if item.allows_na else []))
        attrs[f"answer__{item.id}"] = RadioField(item.text.get(lang), choices=choices,
                                                validators=[InputRequired()] if item.required else [Optional()],
                                                description=item.evidence.get(lang))
        attrs[f"comment__{item.id}"] = TextAreaField(_l("Comment"), validators=[Optional(), Length(max=NOTE_MAX)])

    def validate(self, extra_validators=None) -> bool:
        ok = FlaskForm.validate(self, extra_validators)
        for item in items:
            if self[f"answer__{item.id}"].data == "no" and not (self[f"comment__{item.id}"].data or "").strip():
                self[f"comment__{item.id}"].errors = list(self[f"comment__{item.id}"].errors) + [
                    str(_l('A "no" needs a comment.'))]
                ok = False
        return ok

    attrs["validate"] = validate
    attrs["ids"] = [item.id for item in items]
    return type("ChecklistForm", (FlaskForm,), attrs)


class VoteForm(FlaskForm):
    meaning = chosen_select(_l("Meaning of your signature"), [
        ("approve", _l("approve")), ("approve_with_conditions", _l("approve with conditions")),
        ("require_revisions", _l("require revisions")), ("defer", _l("defer")), ("disapprove", _l("disapprove")),
        ("abstain", _l("abstain"))])
    comment = TextAreaField(_l("Comment"), validators=[Optional(), declared("vote", "comment")])
    proposed_conditions = TextAreaField(
        _l("Proposed conditions"), validators=[Optional(), declared("vote", "proposed_conditions")],
        description=_l("Conditions you propose for an approval: the chair reads them with your vote."))
    password = PasswordField(_l("Your password (electronic signature)"), validators=[DataRequired()],
                             description=_l("Re-entering your password applies your electronic signature: your "
                                            "printed name, the date and time (UTC) and this meaning are recorded "
                                            "with the case."))


class AssignForm(FlaskForm):
    reviewer = SelectField(_l("Reviewer"), choices=[])
    due_date = DateField(_l("Due date"), validators=[Optional()])


class CommentForm(FlaskForm):
    text = TextAreaField(_l("Comment"), validators=[DataRequired(), declared("comment", "text")])


class MeetingForm(FlaskForm):
    title = StringField(_l("Title"), validators=[DataRequired(), Length(max=200)])
    scheduled_for = StringField(_l("Date and time (UTC, YYYY-MM-DD HH:MM)"), validators=[
        DataRequired(), Regexp(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}$", message=_l("Use YYYY-MM-DD HH:MM."))])
    location = StringField(_l("Location"), validators=[Optional(), Length(max=200)])


class ObligationForm(FlaskForm):
    obligation_id = StringField(validators=[DataRequired(), Length(max=80)])
    status = SelectField(_l("Status"), choices=opts([("open", _l("open")), ("satisfied", _l("satisfied")),
                                                ("not_applicable", _l("not applicable"))]))
    evidence = StringField(_l("Evidence"), validators=[Optional(), Length(max=2000)])
    reference = StringField(_l("Reference number"), validators=[Optional(), Length(max=200)])


class UserForm(FlaskForm):
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Email(), Length(max=254)])
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    roles = MultiCheckboxField(_l("Roles"), choices=[])
    is_scientist = BooleanField(_l("Scientist (committee composition)"), default=True)
    is_affiliated = BooleanField(_l("Affiliated with the institution"), default=True)
    active = BooleanField(_l("Active"), default=True)
    password = PasswordField(_l("Password (new accounts; leave empty to keep)"), validators=[Optional(),
                                                                                          Length(max=256)])


class TokenForm(FlaskForm):
    name = StringField(_l("Token name"), validators=[DataRequired(), Length(max=100)])
    scope = SelectField(_l("Scope"), choices=opts([("read", _l("read")), ("submit", _l("submit"))]))


class LanguageForm(FlaskForm):
    language = SelectField(_l("Language for pages and e-mails"),
                           choices=opts([("", _l("as my browser says")), ("en", "English"), ("zh_CN", "简体中文")]))


#: How each way of delivering notification e-mails is offered (every value of the enum, in its order).
DELIVERY_LABELS = {NotificationDelivery.IMMEDIATE: _l("one e-mail per notification, at once"),
                   NotificationDelivery.DAILY: _l("one digest e-mail a day")}


class DeliveryForm(FlaskForm):
    delivery = SelectField(_l("E-mail of my notifications"),
                           choices=opts([(d.value, DELIVERY_LABELS[d]) for d in NotificationDelivery]))


class PasswordChangeForm(FlaskForm):
    current = PasswordField(_l("Current password"), validators=[DataRequired()])
    new = PasswordField(_l("New password"), validators=[DataRequired(), Length(max=256)])


# --- incidents --------------------------------------------------------------------------------------

#: What each severity means to the person reporting (the choices follow governance.domain.Severity).
SEVERITY_MEANINGS = {Severity.MINOR: _l("minor — no effect on care"),
                     Severity.MODERATE: _l("moderate — care affected, no harm"),
                     Severity.SERIOUS: _l("serious — harm or near miss"),
                     Severity.CRITICAL: _l("critical — serious harm or death risk")}


class IncidentForm(FlaskForm):
    deployment_id = SelectField(_l("AI system"), coerce=int, validators=[InputRequired()],
                                description=_l("The deployment the incident happened with."))
    model_version_id = SelectField(_l("Model version"), coerce=int, default=0,
                                   description=_l("Leave at 'the approved version' unless you know otherwise."))
    # from the Severity enum; no radio is checked until the reporter chooses
    severity = RadioField(_l("Severity"), validators=[must_choose(_l("Severity"))], choices=[])
    occurred_at = DateField(_l("Date it happened"), validators=[Optional()])
    what_happened = TextAreaField(_l("What happened"),
                                  validators=[DataRequired(), Length(max=max_length(IncidentIn, "what_happened"))])
    patient_harmed = BooleanField(_l("A patient was harmed"))
    deidentified_example = TextAreaField(
        _l("De-identified example"),
        validators=[Optional(), Length(max=max_length(IncidentIn, "deidentified_example"))],
        description=_l("The model's input and output with names, record numbers, dates of birth and other "
                       "identifiers removed."))


class AdverseEventForm(FlaskForm):
    reference = StringField(_l("National adverse-event report number"), validators=[DataRequired(), Length(max=200)])


class ConditionCloseForm(FlaskForm):
    """What shows a condition of approval met (its owner or the chair), or why the chair waives it."""

    text = TextAreaField(_l("Evidence or reason"), validators=[DataRequired(), Length(min=10, max=4000)],
                         description=_l("A report, a document reference or a measurement; for a waiver, the reason."))


class DocumentForm(FlaskForm):
    """A document attached as evidence: its type (the required ones of the checklists' data, or other), the file
    and an optional note. What the file is, is judged from its content when it is attached."""

    doc_type = SelectField(_l("Document type"), validators=[InputRequired()])
    file = FileField(_l("File"), validators=[FileRequired(message=_l("Choose a file."))],
                     description=_l("PDF, Word (DOCX), Excel (XLSX), PNG, JPEG or plain text."))
    note = TextAreaField(_l("Note"), validators=[Optional(), Length(max=2000)])

    def __init__(self, types, lang: str, **kwargs):
        super().__init__(**kwargs)
        self.doc_type.choices = opts((type_id, types.title(type_id).get(lang)) for type_id in types.ids)


class DeploymentDocumentForm(DocumentForm):
    """On a deployment's page a document may go to the deployment itself, one of its conditions of approval or one
    of its obligations: ``subjects`` are (``type:id``, label) pairs, the deployment's first."""

    subject = SelectField(_l("Attached to"), validators=[InputRequired()])

    def __init__(self, types, lang: str, subjects, **kwargs):
        super().__init__(types, lang, **kwargs)
        self.subject.choices = opts(subjects)
