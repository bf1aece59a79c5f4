"""Messages about course documents (issue 13), in German and English: why an uploaded file could not be
read, written for the teacher who uploaded it (what happened and what to do)."""

from __future__ import annotations

ENTRIES: dict[str, dict[str, str]] = {
    "parse_too_large": {
        "en": "The file is too large ({size_mib} MiB); at most {limit_mib} MiB can be uploaded. Split it or reduce embedded images.",
        "de": "Die Datei ist zu groß ({size_mib} MiB); höchstens {limit_mib} MiB sind möglich. Teilen Sie sie auf oder verkleinern Sie eingebettete Bilder.",
    },
    "parse_unsupported": {
        "en": "This file type cannot be read. Supported are PDF, DOCX, PPTX, ODT, HTML, Markdown and plain text.",
        "de": "Dieser Dateityp kann nicht gelesen werden. Unterstützt werden PDF, DOCX, PPTX, ODT, HTML, Markdown und reiner Text.",
    },
    "parse_legacy_office": {
        "en": "This is an old Office format (.doc, .ppt, .xls). Please save it as DOCX, PPTX or PDF and upload that.",
        "de": "Dies ist ein altes Office-Format (.doc, .ppt, .xls). Bitte speichern Sie die Datei als DOCX, PPTX oder PDF und laden Sie diese hoch.",
    },
    "parse_encrypted": {
        "en": "The file is password-protected. Please upload a version without a password.",
        "de": "Die Datei ist passwortgeschützt. Bitte laden Sie eine Fassung ohne Passwort hoch.",
    },
    "parse_too_many_pages": {
        "en": "The document has more pages or slides than allowed (at most {limit} per document). Please split it.",
        "de": "Das Dokument hat mehr Seiten oder Folien als erlaubt (höchstens {limit} pro Dokument). Bitte teilen Sie es auf.",
    },
    "parse_zip_bomb": {
        "en": "The file would unpack to far more data than it contains and was refused. Please save it again with your office program.",
        "de": "Die Datei würde sich auf ein Vielfaches ihrer Größe entpacken und wurde abgelehnt. Bitte speichern Sie sie mit Ihrem Office-Programm neu.",
    },
    "parse_xml_entities": {
        "en": "The file contains XML entity declarations, which office programs never write, and was refused. Please save it again with your office program.",
        "de": "Die Datei enthält XML-Entity-Deklarationen, die Office-Programme nie schreiben, und wurde abgelehnt. Bitte speichern Sie sie mit Ihrem Office-Programm neu.",
    },
    "parse_corrupt": {
        "en": "The file could not be read; it may be damaged. Try saving or exporting it again (e.g. as PDF).",
        "de": "Die Datei konnte nicht gelesen werden; sie ist vielleicht beschädigt. Speichern oder exportieren Sie sie erneut (z. B. als PDF).",
    },
    "parse_no_text": {
        "en": "No text was found in the file. A scanned PDF needs text recognition (OCR) before it can be used.",
        "de": "In der Datei wurde kein Text gefunden. Ein eingescanntes PDF braucht zuerst eine Texterkennung (OCR).",
    },
    "parse_timeout": {
        "en": "Reading the file took longer than {seconds} seconds and was stopped. Please split the document or export it again.",
        "de": "Das Lesen der Datei dauerte länger als {seconds} Sekunden und wurde abgebrochen. Bitte teilen Sie das Dokument auf oder exportieren Sie es erneut.",
    },
    "parse_memory": {
        "en": "Reading the file needed more than {limit_mib} MiB of memory and was stopped. Please split the document or export it again.",
        "de": "Das Lesen der Datei brauchte mehr als {limit_mib} MiB Speicher und wurde abgebrochen. Bitte teilen Sie das Dokument auf oder exportieren Sie es erneut.",
    },
    "parse_crashed": {
        "en": "The document reader stopped unexpectedly on this file. Try exporting it again (e.g. as PDF); other uploads are not affected.",
        "de": "Das Leseprogramm ist bei dieser Datei unerwartet abgebrochen. Exportieren Sie sie erneut (z. B. als PDF); andere Uploads sind nicht betroffen.",
    },
    "documents_edit": {
        "en": "only the course's teachers and administrators may add or delete an assistant's documents",
        "de": "nur die Lehrenden des Kurses und Administratorinnen und Administratoren dürfen Dokumente eines Assistenten hinzufügen oder löschen",
    },
    "document_missing": {
        "en": "document {document_id} not found",
        "de": "Dokument {document_id} nicht gefunden",
    },
    "page_missing": {
        "en": "page {page} of document {document_id} not found",
        "de": "Seite {page} von Dokument {document_id} nicht gefunden",
    },
    "documents_none": {
        "en": "send one or more files in the multipart field \"file\", or a JSON body with \"url\"",
        "de": "senden Sie eine oder mehrere Dateien im Multipart-Feld \"file\" oder einen JSON-Body mit \"url\"",
    },
    "documents_too_many": {
        "en": "at most {limit} files per upload",
        "de": "höchstens {limit} Dateien pro Upload",
    },
}
