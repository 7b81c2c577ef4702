"""Which text becomes the body, and how raw 8-bit headers are read."""

from __future__ import annotations

from mailgate.parse import parse_message


def test_raw_8bit_subject_is_read_in_the_charset_the_body_declares() -> None:
    subject = "提示：您的企业成员".encode("gb2312")
    raw = (
        b"From: a@x.test\r\nSubject: " + subject + b"\r\n"
        b"Content-Type: text/plain; charset=gb2312\r\n\r\n" + "尊敬的管理员".encode("gb2312")
    )
    mail = parse_message(raw)
    assert mail.subject == "提示：您的企业成员"
    assert mail.text.startswith("尊敬的管理员")


def test_raw_utf8_subject_wins_over_the_declared_charset() -> None:
    raw = (
        b"From: a@x.test\r\nSubject: " + "Grüße".encode() + b"\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nhallo\r\n"
    )
    assert parse_message(raw).subject == "Grüße"


def _multipart(subtype: str, *parts: tuple[str, bytes]) -> bytes:
    body = b"".join(
        b"--b\r\nContent-Type: " + ctype.encode() + b"\r\n\r\n" + text + b"\r\n"
        for ctype, text in parts
    )
    return (
        b"From: a@x.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/"
        + subtype.encode()
        + b'; boundary="b"\r\n\r\n'
        + body
        + b"--b--\r\n"
    )


def test_a_blank_first_text_part_does_not_hide_the_text_after_it() -> None:
    raw = _multipart("mixed", ("text/plain", b""), ("text/plain", b"The real text."))
    assert parse_message(raw).text.strip() == "The real text."


def test_blank_plain_alternative_falls_back_to_the_html() -> None:
    raw = _multipart("alternative", ("text/plain", b" "), ("text/html", b"<p>Hello there</p>"))
    assert parse_message(raw).text.strip() == "Hello there"


def test_html_text_survives_a_head_that_is_never_closed() -> None:
    from mailgate.parse import html_to_text

    markup = "<html><head><title>News<style>p {}</style><body><p>Meet the new laptop</p>"
    assert html_to_text(markup) == "Meet the new laptop"


def test_html_entities_are_decoded_once() -> None:
    from mailgate.parse import html_to_text

    assert html_to_text("<p>a=1&amp;amp;notify=2 &lt;b&gt;</p>") == "a=1&amp;notify=2 <b>"


def test_an_address_broken_across_an_unindented_line_stays_in_its_header() -> None:
    raw = b"From: a@x.test\r\nSubject: s\r\nCc: C <c@x.test>, D <d@\r\nx.test>\r\n\r\nBody.\r\n"
    mail = parse_message(raw)
    assert [a.email for a in mail.cc] == ["c@x.test", "d@x.test"]
    assert mail.text.strip() == "Body."


def test_raw_iso_2022_jp_header_is_decoded() -> None:
    subject = "メールエラー通知".encode("iso-2022-jp")
    raw = b"From: a@x.test\r\nSubject: " + subject + b"\r\n\r\nbody\r\n"
    assert parse_message(raw).subject == "メールエラー通知"


def test_undeclared_iso_2022_jp_body_is_decoded() -> None:
    raw = b"From: a@x.test\r\nSubject: s\r\n\r\n" + "こんにちは".encode("iso-2022-jp") + b"\r\n"
    assert parse_message(raw).text.strip() == "こんにちは"


def _plain(charset: str, text: bytes, subject: bytes = b"s") -> tuple[str, str]:
    raw = (
        b"From: a@x.test\r\nSubject: "
        + subject
        + b"\r\nContent-Type: text/plain; charset="
        + charset.encode()
        + b"\r\n\r\n"
        + text
    )
    mail = parse_message(raw)
    return mail.subject, mail.text.strip()


def test_declared_charsets_are_read_as_their_supersets() -> None:
    assert _plain("gb2312", "打印机坏了。镕".encode("gbk"))[1] == "打印机坏了。镕"
    assert _plain("shift_jis", "①番の件、㈱テスト".encode("cp932"))[1] == "①番の件、㈱テスト"
    assert _plain("euc-kr", "똠방각하".encode("cp949"))[1] == "똠방각하"


def test_labels_python_does_not_know_are_recognised() -> None:
    assert _plain("x-gbk", "您好".encode("gbk"))[1] == "您好"
    assert _plain('"iso-8859-8-i"', "שלום".encode("iso-8859-8"))[1] == "שלום"
    assert _plain("windows-874", "สวัสดี".encode("cp874"))[1] == "สวัสดี"


def test_a_stray_byte_in_a_multibyte_text_spoils_one_character_only() -> None:
    text = "您好".encode("gb18030") + b"\xff" + "打印机".encode("gb18030")
    assert _plain("gb2312", text)[1] == "您好\ufffd打印机"


def test_encoded_subject_in_gb2312_with_gbk_characters() -> None:
    import base64

    word = b"=?gb2312?B?" + base64.b64encode("打印机故障 镕".encode("gbk")) + b"?="
    assert _plain("utf-8", b"x", word)[0] == "打印机故障 镕"


def test_undeclared_latin_text_with_clustered_umlauts_is_not_read_as_cyrillic() -> None:
    raw = b"From: a@x.test\r\nSubject: x\r\n\r\nGr\xfc\xdfe, M\xe4\xf6\xfc\xdf und Stra\xdfe\r\n"
    assert (
        parse_message(raw).text.strip()
        == "Gr\u00fc\u00dfe, M\u00e4\u00f6\u00fc\u00df und Stra\u00dfe"
    )


def test_undeclared_cyrillic_text_is_still_recognised() -> None:
    text = "\u041f\u0440\u0438\u0432\u0435\u0442, \u043a\u0430\u043a \u0434\u0435\u043b\u0430?"
    for charset in ("cp1251", "koi8_r"):
        raw = b"From: a@x.test\r\nSubject: x\r\n\r\n" + text.encode(charset) + b"\r\n"
        assert parse_message(raw).text.strip() == text


def _mixed(*parts: bytes) -> bytes:
    body = b"".join(b"--b\r\n" + part + b"\r\n" for part in parts)
    return (
        b"From: a@x.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + body + b"--b--\r\n"
    )


PLAIN = b"Content-Type: text/plain\r\n\r\nPlease reset my password."
SIGNATURE = b"Content-Type: text/html\r\n\r\n<p>-- Jane, ACME</p>"


def test_an_html_part_beside_the_text_in_mixed_is_not_its_html_form() -> None:
    mail = parse_message(_mixed(PLAIN, SIGNATURE))
    assert mail.text.strip() == "Please reset my password."
    assert mail.html is None


def test_the_html_of_the_same_alternative_is_kept_even_inside_related() -> None:
    alternative = (
        b"Content-Type: multipart/alternative; boundary=a\r\n\r\n"
        b"--a\r\nContent-Type: text/plain\r\n\r\nHello\r\n"
        b"--a\r\nContent-Type: multipart/related; boundary=r\r\n\r\n"
        b"--r\r\nContent-Type: text/html\r\n\r\n<p>Hello</p>\r\n--r--\r\n--a--"
    )
    mail = parse_message(_mixed(alternative, SIGNATURE))
    assert mail.text.strip() == "Hello"
    assert mail.html is not None and "Hello" in mail.html and "Jane" not in mail.html


def test_html_only_mail_keeps_its_html() -> None:
    mail = parse_message(_mixed(SIGNATURE))
    assert mail.text.strip() == "-- Jane, ACME"
    assert mail.html is not None and "Jane" in mail.html


def _base64_labelled(charset: bytes, body: bytes) -> bytes:
    return (
        b"From: a@x.test\r\nSubject: x\r\nContent-Type: text/plain; charset=" + charset + b"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body + b"\r\n"
    )


def test_text_labelled_base64_that_is_not_is_taken_as_written() -> None:
    raw = _base64_labelled(b"utf-8", b"Hello there\r\nsecond line")
    assert parse_message(raw).text == "Hello there\nsecond line\n"


def test_real_base64_text_is_still_decoded() -> None:
    raw = _base64_labelled(b"utf-8", b"SGVsbG8gdGhlcmUK")
    assert parse_message(raw).text == "Hello there\n"


def test_line_breaks_in_html_source_are_spaces_except_in_pre() -> None:
    raw = (
        b"From: a@x.test\r\nSubject: x\r\nContent-Type: text/html\r\n\r\n"
        b"<p>This\r\n<em>is</em>\r\na test</p><pre>one\r\ntwo</pre>\r\n"
    )
    assert parse_message(raw).text == "This is a test\none\ntwo"


def test_eight_bit_text_labelled_base64_keeps_its_own_charset() -> None:
    text = "\u041f\u0440\u0438\u0432\u0435\u0442, \u044d\u0442\u043e \u0442\u0435\u043a\u0441\u0442"
    raw = _base64_labelled(b"koi8-r", text.encode("koi8_r"))
    assert parse_message(raw).text.strip() == text
