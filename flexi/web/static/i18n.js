// German and English texts, and localized numbers and dates (Intl). The language comes from
// the switch (remembered in this browser), else the account's setting, else the browser's.
const TEXTS = {
  en: {
    close: "Close", doc_chunks: "Passages", doc_delete_confirm: "Delete the document “{name}”? Its passages are removed from the assistant's search. This cannot be undone.",
    doc_delete_named: "Delete document {name}", doc_deleted: "“{name}” deleted.", doc_fetching: "Fetching the page…",
    doc_files: "Upload files", doc_files_hint: "PDF, DOCX, PPTX, ODT, HTML, Markdown or plain text; choose several at once or drop them here.",
    doc_forbidden: "Only the course's teachers and administrators may change the documents.", doc_none: "No documents yet.",
    doc_pages: "Pages", doc_status_failed: "failed", doc_status_processing: "being read", doc_status_queued: "waiting",
    doc_status_ready: "ready", doc_summary: "{ready} of {total} documents ready.",
    doc_too_large: "The file is larger than this server accepts.", doc_unsupported: "This file type cannot be read.",
    doc_uploaded: "Received {n}. The documents are being read; the list shows when they are ready.", doc_uploading: "Uploading {n} file(s)…",
    doc_url: "Or add a web page (URL)", doc_url_add: "Add URL",
    documents: "Course documents", documents_after_save: "After saving, open the assistant again to add course documents.",
    documents_intro: "The assistant answers from these documents and names its sources (document and page). Everyone who may use the assistant can open the cited pages.",
    source_cited: "Cited passage", source_loading: "Loading the page…", source_open: "Source [{n}]: {source}",
    source_page: "{document}, page {page}", sources: "Sources",
    account_no_user: "Authentication is off on this server: there is no personal account.", account_title: "My data",
    courses: "Courses", erase_account: "Delete my account",
    erase_confirm: "Delete your account and everything stored about you? Usage totals stay only without any link to you. This cannot be undone.",
    expires_in_days: "Valid for (days)", export_data: "Download my data", key_create: "Create key",
    key_created: "Your new key (shown only now, copy it):", keys_intro: "Keys let your own programs use the API (Ollama or OpenAI clients).",
    keys_title: "My API keys", limit: "Limit", limit_requests_per_minute: "Requests per minute", limit_tokens_per_day: "Tokens per day",
    limit_tokens_per_week: "Tokens per week", limit_value: "Allowed", my_data: "Export and deletion",
    my_data_intro: "Download everything Flexi stores about you (JSON), or delete your account.", nav_account: "My data",
    quotas_title: "My limits", resets: "Resets", used: "Used",
    admin_courses: "Courses", admin_groups: "Groups", admin_policies: "Model policies", admins_only: "administrators only",
    back_to_list: "Back to the list", course_create: "Add a course",
    course_delete_confirm: "Delete course {name}? Its members lose their course role, keys billed to it stay without a course. This cannot be undone.",
    course_delete_named: "Delete course {name}", course_role: "Course role", course_role_of: "Course role of {name}",
    course_role_student: "Student", course_role_teacher: "Teacher", course_role_tutor: "Tutor", course_title: "Course {name}",
    courses_search: "Search courses", everyone: "everyone", group_create: "Add a group",
    group_delete_confirm: "Delete group {name}? Policies that name it no longer admit its members. This cannot be undone.",
    group_delete_named: "Delete group {name}", group_title: "Group {name}", groups_search: "Search groups",
    member_add: "Add a member", member_remove: "Remove", member_remove_named: "Remove {user} from {name}", members: "Members",
    policies_search: "Search model policies", policy_caps_hint: "Empty = no cap beyond the role's defaults.",
    policy_create: "Add a model policy", policy_delete_confirm: "Delete the policy for {pattern}? The model then follows the server's default access.",
    policy_delete_named: "Delete the policy for {pattern}", policy_edit: "Edit the policy for {pattern}",
    policy_intro: "Models that no policy names follow the server's default (open to everyone signed in, or administrators only). Administrators may use every model.",
    policy_max_context: "Maximum context (tokens)", policy_max_output: "Maximum answer length (tokens)",
    policy_no_groups: "No groups yet: create them on the Groups tab.", policy_pattern: "Model or pattern",
    policy_pattern_hint: "A model name (smollm2:135m) or a pattern with * and ? (llama3*). The most specific policy applies.",
    policy_roles: "Roles", policy_who: "Who may use the model",
    policy_who_hint: "Members of a ticked role or of a ticked group. Nothing ticked = everyone.", search: "Search", title: "Title",
    user_not_found: "There is no user named “{name}”.",
    actions: "Actions", active: "active", admin_keys: "API keys", admin_models: "Models", admin_quotas: "Quotas",
    admin_sections: "Administration sections", admin_usage: "Usage", admin_users: "Users and roles", advanced: "Advanced settings", all: "all",
    answering: "Answering…", applies_to: "Applies to", assistant: "Assistant",
    assistant_course: "Course: {course} · Model: {model}", assistant_edit: "Edit assistant", assistant_new: "New assistant",
    assistant_open: "Open", assistant_system_hint: "Instructions the model follows in every answer. Students see them only if you allow it below.",
    assistant_usage: "Usage", assistant_usage_totals: "Last 30 days: {requests} requests, {tokens} tokens, {users} different users (no texts are stored).",
    assistants_intro: "Course assistants answer your students with a model, instructions and a welcome message you choose. Students find them on their start page.",
    assistants_no_course: "You are not a teacher in any course yet. An administrator can add you to a course as teacher.",
    assistants_none: "You have not created an assistant yet.", assistants_title: "Course assistants",
    audience: "Who may use it", audience_campus: "Everyone at the university with the link", audience_course: "Members of the course",
    audience_hint: "Course members see the assistant on their start page.", cancel: "Cancel",
    chart_requests_day: "Requests per day", chart_tokens_day: "Tokens per day", chart_tokens_model: "Tokens per model",
    chart_tokens_course: "Tokens per course", completion_tokens: "Output tokens", conversations: "Conversations",
    copied: "Copied", copy: "Copy", copy_code: "Copy code", copy_failed: "Copy failed", copy_link: "Copy link",
    course: "Course", course_assistants: "Course assistants", create: "Create", created: "Created", day: "Day", delete: "Delete",
    delete_confirm: "Delete “{title}”? This cannot be undone.", delete_named: "Delete conversation {title}",
    description: "Description", description_hint: "Shown to students as plain text.", disable: "Disable", disabled: "disabled",
    display_name: "Display name", edit: "Edit", edit_message: "Edit your message", empty_chat: "Ask anything. Your conversation stays on the university's servers.",
    enable: "Enable", error: "Error", error_title: "Something went wrong", example_questions: "Example questions",
    example_questions_hint: "One per line, at most 10.", expires: "Expires",
    history_browser: "Conversations are kept only in this browser.", history_server: "Conversations are kept on the server for {days} days.",
    image_not_loaded: "image not loaded", key_prefix: "Key", language: "Language", languages: "Languages", last_used: "Last used",
    license: "Licence", load: "Load", loaded: "loaded", loaded_memory: "loaded, {size}, until {until}", loading_model: "Loading the model…",
    max_tokens: "Maximum answer length (tokens)", max_tokens_hint: "Empty = as long as the model and the limits allow.",
    local_account: "Local account", main_nav: "Main navigation", memory: "Memory", messages: "Messages", model: "Model",
    name: "Name", nav_admin: "Administration", nav_assistants: "Assistants", nav_chat: "Chat", never: "never",
    new_chat: "New chat", no_conversations: "No conversations yet.", no_models: "No model available",
    not_found_text: "It may have been deleted, or you may not have access.", not_found_title: "Not found", not_loaded: "not loaded",
    nothing_yet: "Nothing here yet.", owner: "Owner", parameters: "{n} parameters", parameters_col: "Parameters",
    password: "Password", password_hint: "Only for local sign-in; leave empty for single sign-on users.",
    privacy_content_off: "The texts of your prompts and answers are not stored on the server.",
    privacy_content_on: "Prompts and answers are stored for “{purpose}” and deleted after {days} days.",
    privacy_history_browser: "Your conversations are kept only in this browser; the server does not store them.",
    privacy_history_server: "Your conversations are stored on the server and deleted {days} days after their last change.",
    privacy_local: "The models run on the university's own servers; nothing is sent to outside companies.",
    privacy_local_rest: "The other models run on the university's own servers.",
    privacy_external: "Models of {name} ({host}) run outside the university: prompts sent to them leave the university.",
    external: "external", external_hint: "Runs outside the university at a cloud provider: your prompts leave the university.",
    privacy_rights: "Under “My data” you can download everything stored about you or delete your account.",
    privacy_title: "What Flexi stores", privacy_usage: "For quotas and statistics each request is recorded under a pseudonym (model, time, number of tokens), deleted after {days} days.",
    prompt_label: "Your message", prompt_placeholder: "Write a message… (Enter sends, Shift+Enter adds a line)",
    prompt_tokens: "Input tokens", pull: "Pull", pull_done: "Done: the model is ready.",
    pull_hint: "A Hugging Face GGUF (hf.co/org/repo:quant) or the URL of a .gguf file.", pull_progress: "Download progress",
    pull_source: "Model to pull", pull_starting: "Starting…", pull_title: "Add a model", quantization: "Quantization",
    queued: "Waiting in the queue…", queued_at: "Waiting in the queue: position {n}",
    quota_empty_hint: "Empty field = no limit.", quota_kind_course: "Course", quota_kind_key: "API key", quota_kind_role: "Role",
    quota_kind_user: "User", quota_none: "No personal limit.", quota_role_set: "Set limits for a role",
    quota_tokens_per_day: "Today {remaining} of {value} tokens left (resets {reset})",
    quota_tokens_per_week: "This week {remaining} of {value} tokens left (resets {reset})",
    regenerate: "Regenerate", rename: "Rename", rename_named: "Rename conversation {title}", rename_prompt: "New title",
    requests: "Requests", requests_per_minute: "Requests per minute", retry: "Try again", revoke: "Revoke",
    revoke_confirm: "Revoke key {prefix}? Programs using it stop working at once.", revoke_named: "Revoke key {prefix}",
    role: "Role", role_admin: "Administrator", role_of: "Role of {name}", role_researcher: "Researcher", role_service: "Service",
    role_student: "Student", role_teacher: "Teacher", save: "Save", save_failed: "Could not save the conversation", scopes: "Scopes",
    send: "Send", send_edited: "Send again", sending: "Sending…", show_system_prompt: "Students may see the instructions",
    sign_in: "Sign in", sign_in_sso: "Sign in with your university account", sign_out: "Sign out", size: "Size",
    stats: "{tokens} tokens · {rate} tokens/s", status: "Status", stop: "Stop", stopped: "Stopped.", subject: "Who",
    system_prompt: "Instructions (system prompt)", system_prompt_hint: "Tells the model how to answer, e.g. “Answer briefly, in German.”",
    temperature: "Temperature", temperature_hint: "0 = focused and repeatable, higher = more varied (0–2). Empty: the model's default.",
    terms_accept: "I accept", terms_intro: "Please read and accept the terms of use and privacy notice (version {version}) before you start.",
    terms_read: "Read the terms of use", terms_title: "Terms of use and privacy", tokens: "Tokens",
    tokens_per_day: "Tokens per day", tokens_per_week: "Tokens per week", unknown: "unknown", unlimited: "no limit",
    unload: "Unload", untitled: "Untitled", updated_at: "Last changed {when}",
    usage_intro: "Use of the last {days} days. Users appear only as pseudonyms; no texts are stored.",
    usage_per_model: "Use per model", user_create: "Add a user", username: "User name", welcome_message: "Welcome message",
    welcome_text: "The university's own AI chat: the models run on our servers and your prompts stay here.",
    welcome_title: "Welcome to Flexi", you: "You",
  },
  de: {
    close: "Schließen", doc_chunks: "Textstellen", doc_delete_confirm: "Das Dokument „{name}“ löschen? Seine Textstellen verschwinden aus der Suche des Assistenten. Das kann nicht rückgängig gemacht werden.",
    doc_delete_named: "Dokument {name} löschen", doc_deleted: "„{name}“ gelöscht.", doc_fetching: "Die Seite wird abgerufen…",
    doc_files: "Dateien hochladen", doc_files_hint: "PDF, DOCX, PPTX, ODT, HTML, Markdown oder Text; mehrere auf einmal wählen oder hierher ziehen.",
    doc_forbidden: "Nur Lehrende des Kurses und die Administration dürfen die Dokumente ändern.", doc_none: "Noch keine Dokumente.",
    doc_pages: "Seiten", doc_status_failed: "fehlgeschlagen", doc_status_processing: "wird gelesen", doc_status_queued: "wartet",
    doc_status_ready: "bereit", doc_summary: "{ready} von {total} Dokumenten bereit.",
    doc_too_large: "Die Datei ist größer, als dieser Server annimmt.", doc_unsupported: "Dieser Dateityp kann nicht gelesen werden.",
    doc_uploaded: "{n} empfangen. Die Dokumente werden gelesen; die Liste zeigt, wann sie bereit sind.", doc_uploading: "{n} Datei(en) werden hochgeladen…",
    doc_url: "Oder eine Webseite hinzufügen (URL)", doc_url_add: "URL hinzufügen",
    documents: "Kursdokumente", documents_after_save: "Nach dem Speichern den Assistenten erneut öffnen, um Kursdokumente hinzuzufügen.",
    documents_intro: "Der Assistent antwortet aus diesen Dokumenten und nennt seine Quellen (Dokument und Seite). Alle, die den Assistenten nutzen dürfen, können die zitierten Seiten öffnen.",
    source_cited: "Zitierte Textstelle", source_loading: "Die Seite wird geladen…", source_open: "Quelle [{n}]: {source}",
    source_page: "{document}, Seite {page}", sources: "Quellen",
    account_no_user: "Auf diesem Server ist die Anmeldung ausgeschaltet: es gibt kein persönliches Konto.", account_title: "Meine Daten",
    courses: "Kurse", erase_account: "Mein Konto löschen",
    erase_confirm: "Ihr Konto und alles, was über Sie gespeichert ist, löschen? Nutzungssummen bleiben nur ohne Bezug zu Ihnen erhalten. Das kann nicht rückgängig gemacht werden.",
    expires_in_days: "Gültig für (Tage)", export_data: "Meine Daten herunterladen", key_create: "Schlüssel erzeugen",
    key_created: "Ihr neuer Schlüssel (wird nur jetzt angezeigt, bitte kopieren):", keys_intro: "Mit Schlüsseln können Ihre eigenen Programme die API nutzen (Ollama- oder OpenAI-Clients).",
    keys_title: "Meine API-Schlüssel", limit: "Grenze", limit_requests_per_minute: "Anfragen pro Minute", limit_tokens_per_day: "Tokens pro Tag",
    limit_tokens_per_week: "Tokens pro Woche", limit_value: "Erlaubt", my_data: "Export und Löschung",
    my_data_intro: "Laden Sie alles herunter, was Flexi über Sie speichert (JSON), oder löschen Sie Ihr Konto.", nav_account: "Meine Daten",
    quotas_title: "Meine Grenzen", resets: "Neu ab", used: "Verbraucht",
    admin_courses: "Kurse", admin_groups: "Gruppen", admin_policies: "Modell-Richtlinien", admins_only: "nur Administration",
    back_to_list: "Zurück zur Liste", course_create: "Kurs anlegen",
    course_delete_confirm: "Kurs {name} löschen? Seine Mitglieder verlieren ihre Kursrolle, Schlüssel, die über ihn abrechnen, bleiben ohne Kurs. Das kann nicht rückgängig gemacht werden.",
    course_delete_named: "Kurs {name} löschen", course_role: "Rolle im Kurs", course_role_of: "Rolle von {name} im Kurs",
    course_role_student: "Studierende", course_role_teacher: "Lehrende", course_role_tutor: "Tutor*in", course_title: "Kurs {name}",
    courses_search: "Kurse durchsuchen", everyone: "alle", group_create: "Gruppe anlegen",
    group_delete_confirm: "Gruppe {name} löschen? Richtlinien, die sie nennen, lassen ihre Mitglieder dann nicht mehr zu. Das kann nicht rückgängig gemacht werden.",
    group_delete_named: "Gruppe {name} löschen", group_title: "Gruppe {name}", groups_search: "Gruppen durchsuchen",
    member_add: "Mitglied hinzufügen", member_remove: "Entfernen", member_remove_named: "{user} aus {name} entfernen", members: "Mitglieder",
    policies_search: "Modell-Richtlinien durchsuchen", policy_caps_hint: "Leer = keine Grenze über die Vorgaben der Rolle hinaus.",
    policy_create: "Modell-Richtlinie anlegen", policy_delete_confirm: "Die Richtlinie für {pattern} löschen? Das Modell folgt dann dem Standardzugang des Servers.",
    policy_delete_named: "Richtlinie für {pattern} löschen", policy_edit: "Richtlinie für {pattern} bearbeiten",
    policy_intro: "Modelle, die keine Richtlinie nennt, folgen der Voreinstellung des Servers (offen für alle Angemeldeten oder nur für die Administration). Die Administration darf jedes Modell nutzen.",
    policy_max_context: "Maximaler Kontext (Tokens)", policy_max_output: "Maximale Antwortlänge (Tokens)",
    policy_no_groups: "Noch keine Gruppen: Sie werden unter „Gruppen“ angelegt.", policy_pattern: "Modell oder Muster",
    policy_pattern_hint: "Ein Modellname (smollm2:135m) oder ein Muster mit * und ? (llama3*). Die genaueste Richtlinie gilt.",
    policy_roles: "Rollen", policy_who: "Wer das Modell nutzen darf",
    policy_who_hint: "Mitglieder einer angekreuzten Rolle oder einer angekreuzten Gruppe. Nichts angekreuzt = alle.", search: "Suchen", title: "Titel",
    user_not_found: "Es gibt keine Person mit dem Benutzernamen „{name}“.",
    actions: "Aktionen", active: "aktiv", admin_keys: "API-Schlüssel", admin_models: "Modelle", admin_quotas: "Kontingente",
    admin_sections: "Bereiche der Verwaltung", admin_usage: "Nutzung", admin_users: "Nutzende und Rollen", advanced: "Erweiterte Einstellungen", all: "alle",
    answering: "Antwortet…", applies_to: "Gilt für", assistant: "Assistent",
    assistant_course: "Kurs: {course} · Modell: {model}", assistant_edit: "Assistenten bearbeiten", assistant_new: "Neuer Assistent",
    assistant_open: "Öffnen", assistant_system_hint: "Anweisungen, die das Modell bei jeder Antwort befolgt. Studierende sehen sie nur, wenn Sie es unten erlauben.",
    assistant_usage: "Nutzung", assistant_usage_totals: "Letzte 30 Tage: {requests} Anfragen, {tokens} Tokens, {users} verschiedene Personen (es werden keine Texte gespeichert).",
    assistants_intro: "Kurs-Assistenten beantworten Fragen Ihrer Studierenden mit einem Modell, Anweisungen und einer Begrüßung Ihrer Wahl. Studierende finden sie auf ihrer Startseite.",
    assistants_no_course: "Sie sind noch in keinem Kurs als Lehrende eingetragen. Die Administration kann Sie einem Kurs hinzufügen.",
    assistants_none: "Sie haben noch keinen Assistenten angelegt.", assistants_title: "Kurs-Assistenten",
    audience: "Wer darf ihn nutzen", audience_campus: "Alle Hochschulangehörigen mit dem Link", audience_course: "Mitglieder des Kurses",
    audience_hint: "Kursmitglieder sehen den Assistenten auf ihrer Startseite.", cancel: "Abbrechen",
    chart_requests_day: "Anfragen pro Tag", chart_tokens_day: "Tokens pro Tag", chart_tokens_model: "Tokens pro Modell",
    chart_tokens_course: "Tokens pro Kurs", completion_tokens: "Ausgabe-Tokens", conversations: "Unterhaltungen",
    copied: "Kopiert", copy: "Kopieren", copy_code: "Code kopieren", copy_failed: "Kopieren fehlgeschlagen", copy_link: "Link kopieren",
    course: "Kurs", course_assistants: "Kurs-Assistenten", create: "Anlegen", created: "Angelegt", day: "Tag", delete: "Löschen",
    delete_confirm: "„{title}“ löschen? Das kann nicht rückgängig gemacht werden.", delete_named: "Unterhaltung {title} löschen",
    description: "Beschreibung", description_hint: "Wird Studierenden als reiner Text angezeigt.", disable: "Sperren", disabled: "gesperrt",
    display_name: "Anzeigename", edit: "Bearbeiten", edit_message: "Nachricht bearbeiten", empty_chat: "Fragen Sie, was Sie möchten. Ihre Unterhaltung bleibt auf den Servern der Hochschule.",
    enable: "Entsperren", error: "Fehler", error_title: "Etwas ist schiefgegangen", example_questions: "Beispielfragen",
    example_questions_hint: "Eine pro Zeile, höchstens 10.", expires: "Läuft ab",
    history_browser: "Unterhaltungen werden nur in diesem Browser gespeichert.", history_server: "Unterhaltungen werden {days} Tage auf dem Server gespeichert.",
    image_not_loaded: "Bild nicht geladen", key_prefix: "Schlüssel", language: "Sprache", languages: "Sprachen", last_used: "Zuletzt benutzt",
    license: "Lizenz", load: "Laden", loaded: "geladen", loaded_memory: "geladen, {size}, bis {until}", loading_model: "Modell wird geladen…",
    max_tokens: "Maximale Antwortlänge (Tokens)", max_tokens_hint: "Leer = so lang, wie Modell und Grenzen es erlauben.",
    local_account: "Lokales Konto", main_nav: "Hauptnavigation", memory: "Speicher", messages: "Nachrichten", model: "Modell",
    name: "Name", nav_admin: "Verwaltung", nav_assistants: "Assistenten", nav_chat: "Chat", never: "nie",
    new_chat: "Neuer Chat", no_conversations: "Noch keine Unterhaltungen.", no_models: "Kein Modell verfügbar",
    not_found_text: "Vielleicht wurde es gelöscht, oder Sie haben keinen Zugriff.", not_found_title: "Nicht gefunden", not_loaded: "nicht geladen",
    nothing_yet: "Noch nichts vorhanden.", owner: "Inhaber", parameters: "{n} Parameter", parameters_col: "Parameter",
    password: "Passwort", password_hint: "Nur für die lokale Anmeldung; für Single-Sign-on-Konten leer lassen.",
    privacy_content_off: "Die Texte Ihrer Eingaben und Antworten werden auf dem Server nicht gespeichert.",
    privacy_content_on: "Eingaben und Antworten werden für „{purpose}“ gespeichert und nach {days} Tagen gelöscht.",
    privacy_history_browser: "Ihre Unterhaltungen bleiben nur in diesem Browser; der Server speichert sie nicht.",
    privacy_history_server: "Ihre Unterhaltungen werden auf dem Server gespeichert und {days} Tage nach der letzten Änderung gelöscht.",
    privacy_local: "Die Modelle laufen auf den Servern der Hochschule; nichts wird an externe Firmen übermittelt.",
    privacy_local_rest: "Die übrigen Modelle laufen auf den Servern der Hochschule.",
    privacy_external: "Die Modelle von {name} ({host}) laufen außerhalb der Hochschule: Eingaben an sie verlassen die Hochschule.",
    external: "extern", external_hint: "Läuft außerhalb der Hochschule bei einem Cloud-Anbieter: Ihre Eingaben verlassen die Hochschule.",
    privacy_rights: "Unter „Meine Daten“ können Sie alles herunterladen, was über Sie gespeichert ist, oder Ihr Konto löschen.",
    privacy_title: "Was Flexi speichert", privacy_usage: "Für Kontingente und Statistik wird jede Anfrage unter einem Pseudonym erfasst (Modell, Zeit, Anzahl Tokens) und nach {days} Tagen gelöscht.",
    prompt_label: "Ihre Nachricht", prompt_placeholder: "Nachricht schreiben… (Enter sendet, Umschalt+Enter für neue Zeile)",
    prompt_tokens: "Eingabe-Tokens", pull: "Herunterladen", pull_done: "Fertig: das Modell ist bereit.",
    pull_hint: "Ein GGUF-Modell von Hugging Face (hf.co/org/repo:quant) oder die URL einer .gguf-Datei.", pull_progress: "Download-Fortschritt",
    pull_source: "Modell", pull_starting: "Startet…", pull_title: "Modell hinzufügen", quantization: "Quantisierung",
    queued: "In der Warteschlange…", queued_at: "In der Warteschlange: Position {n}",
    quota_empty_hint: "Leeres Feld = keine Grenze.", quota_kind_course: "Kurs", quota_kind_key: "API-Schlüssel", quota_kind_role: "Rolle",
    quota_kind_user: "Person", quota_none: "Kein persönliches Kontingent.", quota_role_set: "Grenzen für eine Rolle festlegen",
    quota_tokens_per_day: "Heute noch {remaining} von {value} Tokens (neu ab {reset})",
    quota_tokens_per_week: "Diese Woche noch {remaining} von {value} Tokens (neu ab {reset})",
    regenerate: "Neu erzeugen", rename: "Umbenennen", rename_named: "Unterhaltung {title} umbenennen", rename_prompt: "Neuer Titel",
    requests: "Anfragen", requests_per_minute: "Anfragen pro Minute", retry: "Erneut versuchen", revoke: "Widerrufen",
    revoke_confirm: "Schlüssel {prefix} widerrufen? Programme, die ihn nutzen, funktionieren sofort nicht mehr.", revoke_named: "Schlüssel {prefix} widerrufen",
    role: "Rolle", role_admin: "Administration", role_of: "Rolle von {name}", role_researcher: "Forschung", role_service: "Dienst",
    role_student: "Studierende", role_teacher: "Lehrende", save: "Speichern", save_failed: "Die Unterhaltung konnte nicht gespeichert werden", scopes: "Berechtigungen",
    send: "Senden", send_edited: "Erneut senden", sending: "Wird gesendet…", show_system_prompt: "Studierende dürfen die Anweisungen sehen",
    sign_in: "Anmelden", sign_in_sso: "Mit dem Hochschulkonto anmelden", sign_out: "Abmelden", size: "Größe",
    stats: "{tokens} Tokens · {rate} Tokens/s", status: "Status", stop: "Stopp", stopped: "Angehalten.", subject: "Wer",
    system_prompt: "Anweisungen (System-Prompt)", system_prompt_hint: "Sagt dem Modell, wie es antworten soll, z. B. „Antworte kurz und auf Deutsch.“",
    temperature: "Temperatur", temperature_hint: "0 = sachlich und wiederholbar, höher = vielfältiger (0–2). Leer: Voreinstellung des Modells.",
    terms_accept: "Ich stimme zu", terms_intro: "Bitte lesen und akzeptieren Sie die Nutzungsbedingungen und Datenschutzhinweise (Version {version}), bevor Sie beginnen.",
    terms_read: "Nutzungsbedingungen lesen", terms_title: "Nutzungsbedingungen und Datenschutz", tokens: "Tokens",
    tokens_per_day: "Tokens pro Tag", tokens_per_week: "Tokens pro Woche", unknown: "unbekannt", unlimited: "keine Grenze",
    unload: "Entladen", untitled: "Ohne Titel", updated_at: "Zuletzt geändert {when}",
    usage_intro: "Nutzung der letzten {days} Tage. Personen erscheinen nur als Pseudonyme; es werden keine Texte gespeichert.",
    usage_per_model: "Nutzung pro Modell", user_create: "Person hinzufügen", username: "Benutzername", welcome_message: "Begrüßung",
    welcome_text: "Der KI-Chat der Hochschule: Die Modelle laufen auf unseren Servern, und Ihre Eingaben bleiben hier.",
    welcome_title: "Willkommen bei Flexi", you: "Sie",
  },
};

let current = "en";

export function detectLocale(fallback = "en") {
  const stored = localStorage.getItem("flexi.locale");
  if (stored === "de" || stored === "en") return stored;
  for (const lang of navigator.languages || [navigator.language]) {
    const short = String(lang).slice(0, 2).toLowerCase();
    if (short === "de" || short === "en") return short;
  }
  return fallback === "de" ? "de" : "en";
}

export function setLocale(lang, remember = false) {
  current = lang === "de" ? "de" : "en";
  if (remember) localStorage.setItem("flexi.locale", current);
  document.documentElement.lang = current;
  const skip = document.querySelector(".skip-link");
  if (skip) skip.textContent = current === "de" ? "Zum Inhalt springen" : "Skip to content";
}

export function locale() { return current; }

export function t(key, values = {}) {
  const text = TEXTS[current][key] ?? TEXTS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (values[name] ?? `{${name}}`));
}

export function fmtNumber(value, digits = 0) {
  return new Intl.NumberFormat(current === "de" ? "de-DE" : "en-GB", { maximumFractionDigits: digits }).format(Number(value) || 0);
}

export function fmtBytes(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let n = Number(bytes) || 0;
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${fmtNumber(n, n < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}

export function fmtDateTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return new Intl.DateTimeFormat(current === "de" ? "de-DE" : "en-GB", { dateStyle: "medium", timeStyle: "short" }).format(date);
}

export const LOCALES = Object.keys(TEXTS);
export const _TEXTS_FOR_TESTS = TEXTS;
