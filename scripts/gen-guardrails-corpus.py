#!/usr/bin/env python3
"""Writes the labelled guardrail corpus: tests/fixtures/guardrails/corpus/<detector>.txt.

One line per case (the last lines of card, phone, email, ssn and ipv4 are known limits:
values the detectors miss or look-alikes they take, by design). `+ ` lines hold exactly the values the detector must find, each wrapped in
[[ ]]; `- ` lines hold hard negatives (look-alikes the detector must not report). Deterministic
(seeded), so the committed files are reproducible: `python3 scripts/gen-guardrails-corpus.py`.
Values are synthetic: card numbers are test-range or random with a valid Luhn digit, keys are
random strings in each provider's format, nothing is a real credential.
"""
import base64
import json
import os
import random
import string

R = random.Random(20261121)
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "guardrails", "corpus")
N = 120

CONTEXTS = [
    "Please contact {} as soon as possible.",
    "My details: {}",
    "{} is what the form says.",
    "Forwarding this to ({}) for review.",
    "The customer wrote: \"{}\" and hung up.",
    "- item: {}\n- status: pending",
    "Ticket 4471: user gave {}, please verify.",
    "Log line: user={} action=login ok",
    "Can you check {}? Thanks!",
    "Bitte prüfe {} bis Freitag.",
]


def ctx(value):
    return R.choice(CONTEXTS).format("[[" + value + "]]")


def neg(value):
    return R.choice(CONTEXTS).format(value)


def luhn_digit(digits):
    total = 0
    for i, d in enumerate(reversed(digits)):
        v = int(d)
        if i % 2 == 0:
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return str((10 - total % 10) % 10)


def rand_digits(n):
    return "".join(R.choice(string.digits) for _ in range(n))


def card(prefix, length):
    body = prefix + rand_digits(length - len(prefix) - 1)
    return body + luhn_digit(body)


def group(number, sizes, sep):
    out, at = [], 0
    for s in sizes:
        out.append(number[at:at + s])
        at += s
    return sep.join(out)


def cards():
    pos, neg_ = [], []
    brands = [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("3530", 16), ("4", 13), ("36", 14)]
    for _ in range(N):
        prefix, length = R.choice(brands)
        n = card(prefix, length)
        style = R.choice(["plain", "space", "dash"])
        if length == 16 and style != "plain":
            n = group(n, [4, 4, 4, 4], " " if style == "space" else "-")
        elif length == 15 and style != "plain":
            n = group(n, [4, 6, 5], " " if style == "space" else "-")
        pos.append(ctx(n))
    for _ in range(N):
        kind = R.choice(["luhn", "order", "ts", "uuid", "isbn", "phone", "mixed", "tracking", "price", "iin"])
        if kind == "luhn":
            n = card("4", 16)
            n = n[:-1] + str((int(n[-1]) + 1) % 10)
            neg_.append(neg(group(n, [4, 4, 4, 4], " ")))
        elif kind == "order":
            neg_.append(neg("order #" + "9" + rand_digits(15)))
        elif kind == "ts":
            neg_.append(neg(str(1_600_000_000_000 + R.randrange(10**11))))
        elif kind == "uuid":
            neg_.append(neg(str(__import__("uuid").UUID(int=R.getrandbits(128)))))
        elif kind == "isbn":
            neg_.append(neg("ISBN 978-" + rand_digits(1) + "-" + rand_digits(3) + "-" + rand_digits(5) + "-" + rand_digits(1)))
        elif kind == "phone":
            neg_.append(neg("+1 415 555 " + rand_digits(4)))
        elif kind == "mixed":
            n = card("4", 16)
            neg_.append(neg(n[:4] + " " + n[4:8] + "-" + n[8:12] + " " + n[12:]))
        elif kind == "tracking":
            neg_.append(neg("1Z" + "".join(R.choice(string.ascii_uppercase + string.digits) for _ in range(16))))
        elif kind == "price":
            neg_.append(neg("$" + str(R.randrange(1, 99999)) + "." + rand_digits(2)))
        else:
            neg_.append(neg(card("1", 16)))
    return pos, neg_


IBAN_SPECS = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "ES": 24, "IT": 27, "CH": 21, "BE": 16, "AT": 20, "NO": 15, "PL": 28, "SE": 24}


def iban(country):
    length = IBAN_SPECS[country]
    bban = ""
    for i in range(length - 4):
        if country in ("GB", "NL") and i < 4:
            bban += R.choice(string.ascii_uppercase)
        else:
            bban += R.choice(string.digits)
    rearranged = bban + country + "00"
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    check = 98 - int(numeric) % 97
    return country + "%02d" % check + bban


def ibans():
    pos, neg_ = [], []
    for _ in range(N):
        value = iban(R.choice(list(IBAN_SPECS)))
        if R.random() < 0.5:
            value = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
        pos.append(ctx(value))
    for _ in range(N):
        kind = R.choice(["check", "country", "length", "sku", "vin"])
        value = iban(R.choice(list(IBAN_SPECS)))
        if kind == "check":
            value = value[:2] + "%02d" % ((int(value[2:4]) + 1) % 100) + value[4:]
        elif kind == "country":
            value = "ZZ" + value[2:]
        elif kind == "length":
            value = value + "7"
        elif kind == "sku":
            value = "SKU" + rand_digits(2) + "".join(R.choice(string.ascii_uppercase + string.digits) for _ in range(14))
        else:
            value = "WVW" + "".join(R.choice("ABCDEFGHJKLMNPRSTUVWXYZ0123456789") for _ in range(14))
        neg_.append(neg(value))
    return pos, neg_


def ssns():
    pos, neg_ = [], []
    for _ in range(N):
        area = R.choice([R.randrange(1, 666), R.randrange(667, 900)])
        value = "%03d-%02d-%04d" % (area, R.randrange(1, 100), R.randrange(1, 10000))
        if R.random() < 0.2:
            value = value.replace("-", " ")
        pos.append(ctx(value))
    for _ in range(N):
        kind = R.choice(["area0", "666", "9xx", "group", "serial", "date", "phone", "mixed", "ad"])
        a, g, s = R.randrange(1, 666), R.randrange(1, 100), R.randrange(1, 10000)
        value = {
            "area0": "000-%02d-%04d" % (g, s),
            "666": "666-%02d-%04d" % (g, s),
            "9xx": "%03d-%02d-%04d" % (R.randrange(900, 1000), g, s),
            "group": "%03d-00-%04d" % (a, s),
            "serial": "%03d-%02d-0000" % (a, g),
            "date": "2024-%02d-%02d" % (R.randrange(1, 13), R.randrange(1, 29)),
            "phone": "555-%03d-%04d" % (R.randrange(100, 1000), s),
            "mixed": "%03d-%02d %04d" % (a, g, s),
            "ad": "078-05-1120",
        }[kind]
        neg_.append(neg(value))
    return pos, neg_


def phones():
    pos, neg_ = [], []
    for _ in range(N):
        kind = R.choice(["nanp_paren", "nanp_dash", "nanp_dot", "nanp_1", "uk", "de", "fr", "intl_compact"])
        npa = str(R.randrange(2, 10)) + rand_digits(2)
        if npa[1:] == "11":
            npa = npa[0] + "12"
        nxx = str(R.randrange(2, 10)) + rand_digits(2)
        value = {
            "nanp_paren": "(%s) %s-%s" % (npa, nxx, rand_digits(4)),
            "nanp_dash": "%s-%s-%s" % (npa, nxx, rand_digits(4)),
            "nanp_dot": "%s.%s.%s" % (npa, nxx, rand_digits(4)),
            "nanp_1": "1-%s-%s-%s" % (npa, nxx, rand_digits(4)),
            "uk": "+44 20 %s %s" % (rand_digits(4), rand_digits(4)),
            "de": "+49 30 %s %s" % (rand_digits(3), rand_digits(5)),
            "fr": "+33 1 %s %s %s %s" % tuple(rand_digits(2) for _ in range(4)),
            "intl_compact": "+%s%s" % (R.choice(["1", "44", "49", "33", "81"]), rand_digits(10)),
        }[kind]
        pos.append(ctx(value))
    for _ in range(N):
        kind = R.choice(["bare", "date", "time", "order", "version", "price", "ip", "zip", "n11", "range"])
        value = {
            "bare": str(R.randrange(2, 10)) + rand_digits(9),
            "date": "2024-%02d-%02d" % (R.randrange(1, 13), R.randrange(1, 29)),
            "time": "%02d:%02d:%02d" % (R.randrange(24), R.randrange(60), R.randrange(60)),
            "order": "order 10" + rand_digits(8),
            "version": "v%d.%d.%d" % (R.randrange(10), R.randrange(30), R.randrange(100)),
            "price": "$%d,%03d.%02d" % (R.randrange(1, 100), R.randrange(1000), R.randrange(100)),
            "ip": "10.%d.%d.%d" % (R.randrange(256), R.randrange(256), R.randrange(256)),
            "zip": "%05d-%04d" % (R.randrange(100000), R.randrange(10000)),
            "n11": "(911) 555-" + rand_digits(4),
            "range": "pages 120-%d" % R.randrange(121, 999),
        }[kind]
        neg_.append(neg(value))
    return pos, neg_


def emails():
    pos, neg_ = [], []
    names = ["jane", "john.doe", "a.b-c", "x_y", "support+tag", "m.o'neil".replace("'", ""), "info", "dev.ops99"]
    domains = ["example.com", "mail.example.co.uk", "uni-bonn.de", "corp.example.org", "example.io"]
    for _ in range(N):
        pos.append(ctx(R.choice(names) + str(R.randrange(100) if R.random() < 0.3 else "") + "@" + R.choice(domains)))
    for _ in range(N):
        kind = R.choice(["retina", "scoped", "git", "mention", "localhost", "version", "dots", "at_price"])
        value = {
            "retina": "icon%d@2x.png" % R.randrange(10),
            "scoped": "@types/node",
            "git": "git@github",
            "mention": "@" + R.choice(names).replace(".", ""),
            "localhost": "root@localhost",
            "version": "lodash@4.17.%d" % R.randrange(30),
            "dots": "a..b@example.com",
            "at_price": "2 @ $%d.%02d" % (R.randrange(100), R.randrange(100)),
        }[kind]
        neg_.append(neg(value))
    return pos, neg_


def ips():
    pos4, neg4, pos6, neg6 = [], [], [], []
    for _ in range(N):
        pos4.append(ctx("%d.%d.%d.%d" % (R.randrange(1, 256), R.randrange(256), R.randrange(256), R.randrange(256))))
        groups = ["%x" % R.randrange(65536) for _ in range(8)]
        kind = R.choice(["full", "compressed", "loopback", "link"])
        if kind == "full":
            v6 = ":".join(groups)
        elif kind == "compressed":
            v6 = "2001:db8::" + ":".join(groups[:R.randrange(1, 4)])
        elif kind == "loopback":
            v6 = "::1"
        else:
            v6 = "fe80::" + groups[0] + ":" + groups[1]
        if not any(c.isdigit() for c in v6):
            v6 = "2001:db8::1"
        pos6.append(ctx(v6))
    for _ in range(N):
        kind = R.choice(["version", "octet", "oid", "leading0", "semver", "date"])
        neg4.append(neg({
            "version": "v%d.%d.%d.%d" % tuple(R.randrange(10) for _ in range(4)),
            "octet": "%d.%d.%d.%d" % (R.randrange(256, 999), R.randrange(256), R.randrange(256), R.randrange(256)),
            "oid": "1.3.6.1.4.1.%d" % R.randrange(99999),
            "leading0": "010.%d.%d.%d" % (R.randrange(256), R.randrange(256), R.randrange(256)),
            "semver": "%d.%d.%d" % tuple(R.randrange(20) for _ in range(3)),
            "date": "%02d.%02d.%04d" % (R.randrange(1, 29), R.randrange(1, 13), R.randrange(1990, 2030)),
        }[kind]))
        kind = R.choice(["time", "mac", "cpp", "hexword", "ratio", "uuid"])
        neg6.append(neg({
            "time": "%02d:%02d:%02d" % (R.randrange(24), R.randrange(60), R.randrange(60)),
            "mac": ":".join("%02X" % R.randrange(256) for _ in range(6)),
            "cpp": "std::vector<int>",
            "hexword": "dead::beef",
            "ratio": "%d:%d" % (R.randrange(1, 20), R.randrange(1, 20)),
            "uuid": str(__import__("uuid").UUID(int=R.getrandbits(128))),
        }[kind]))
    return (pos4, neg4), (pos6, neg6)


def rand_str(alphabet, n):
    return "".join(R.choice(alphabet) for _ in range(n))


B62 = string.ascii_letters + string.digits
B64URL = B62 + "-_"


def b64url(obj):
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")


def secrets():
    cases = {}
    def gen(name, make, negatives):
        pos = [ctx(make()) for _ in range(N // 2)]
        cases[name] = (pos, [neg(n()) for n in negatives for _ in range(N // (2 * len(negatives)) + 1)])
    gen("openai_key", lambda: R.choice(["sk-", "sk-proj-"]) + rand_str(B62 + "_-", R.choice([48, 64, 120])) ,
        [lambda: "sk-learn", lambda: "sk-" + rand_str(string.ascii_lowercase, 8), lambda: "task-" + rand_str(B62, 24), lambda: "sk-your-key-here-XXXXXXXXXXXXXXXXXXXX"])
    gen("anthropic_key", lambda: "sk-ant-api03-" + rand_str(B64URL, 93) + "AA",
        [lambda: "sk-ant-", lambda: "sk-ant-api03-REDACTED", lambda: "desk-ant-" + rand_str(B62, 30)])
    gen("aws_access_key", lambda: R.choice(["AKIA", "ASIA"]) + rand_str(string.ascii_uppercase + "234567", 16),
        [lambda: "AKIAIOSFODNN7EXAMPLE", lambda: "AKIA" + rand_str(string.ascii_uppercase, 10), lambda: "XAKIA" + rand_str(string.ascii_uppercase + "234567", 16)])
    gen("github_token", lambda: R.choice(["ghp_", "gho_", "ghs_"]) + rand_str(B62, 36) if R.random() < 0.7 else "github_pat_" + rand_str(B62, 22) + "_" + rand_str(B62, 59),
        [lambda: "ghp_" + rand_str(B62, 10), lambda: "github_pat_", lambda: "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])
    gen("slack_token", lambda: "xoxb-" + rand_digits(11) + "-" + rand_digits(12) + "-" + rand_str(B62, 24),
        [lambda: "xoxo, hugs", lambda: "xoxb-", lambda: "xoxb-your-token-here"])
    gen("google_api_key", lambda: "AIza" + rand_str(B64URL, 35),
        [lambda: "AIza" + rand_str(B62, 10), lambda: "Aizawa-san", lambda: "AIzaYOUR_API_KEY_HERE_XXXXXXXXXXXXXXXX"])
    gen("jwt", lambda: b64url({"alg": "HS256", "typ": "JWT"}) + "." + b64url({"sub": rand_digits(8), "iat": 1700000000}) + "." + rand_str(B64URL, 43),
        [lambda: "eyJ" + rand_str(B62, 10), lambda: "eyJub3QganNvbg." + b64url({"a": 1}) + ".x", lambda: b64url({"sub": "1"}) + ".abc.def"])
    gen("bearer_token", lambda: rand_str(B62 + "-._", 32),
        [lambda: "bearer of bad news", lambda: "Bearer <YOUR_TOKEN_HERE_XXXXXXXX>", lambda: "the bearer " + rand_str(string.ascii_lowercase, 5)])
    # Bearer positives: the token after the word, as headers write it.
    cases["bearer_token"] = ([R.choice(["Authorization: Bearer [[{}]]", "curl -H 'authorization: bearer [[{}]]' https://api", "use Bearer [[{}]] here"]).format(rand_str(B62, 12) + rand_str(string.digits, 2) + rand_str(B62 + "-._", 20) + rand_str(B62, 2)) for _ in range(N // 2)],
                             cases["bearer_token"][1])
    def pem(kind):
        body = "\n".join(rand_str(B62 + "+/", 64) for _ in range(R.randrange(3, 8)))
        return "-----BEGIN %sPRIVATE KEY-----\n%s\n-----END %sPRIVATE KEY-----" % (kind, body, kind)
    cases["private_key"] = ([ctx(pem(R.choice(["", "RSA ", "EC ", "OPENSSH "]))) for _ in range(N // 4)],
                            [neg(x) for x in ["-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "the private key is in the vault"] * (N // 12)])
    return cases


def write(name, pos, negs):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + ".txt"), "w") as f:
        f.write("# %s: `+` lines hold values in [[ ]] that must be found, `-` lines hard negatives. Generated by scripts/gen-guardrails-corpus.py\n" % name)
        for line in pos:
            f.write("+ " + line.replace("\\", "\\\\").replace("\n", "\\n") + "\n")
        for line in negs:
            f.write("- " + line.replace("\\", "\\\\").replace("\n", "\\n") + "\n")


def common():
    """Hard negatives for every detector: identifiers and numbers that fill real prompts."""
    import uuid
    lines = []
    for _ in range(N * 2):
        kind = R.choice(["uuid", "sha1", "sha256", "iso", "semver", "price", "order", "b64", "url", "code", "cron", "hexaddr"])
        lines.append(neg({
            "uuid": str(uuid.UUID(int=R.getrandbits(128))),
            "sha1": "%040x" % R.getrandbits(160),
            "sha256": "%064x" % R.getrandbits(256),
            "iso": "2025-%02d-%02dT%02d:%02d:%02d.%03dZ" % (R.randrange(1, 13), R.randrange(1, 29), R.randrange(24), R.randrange(60), R.randrange(60), R.randrange(1000)),
            "semver": "version %d.%d.%d-rc.%d" % (R.randrange(10), R.randrange(50), R.randrange(100), R.randrange(9)),
            "price": "EUR %d.%03d,%02d" % (R.randrange(1, 999), R.randrange(1000), R.randrange(100)),
            "order": "ORD-%d-%s" % (R.randrange(2000, 2030), rand_digits(10)),
            "b64": base64.b64encode(bytes(R.getrandbits(8) for _ in range(30))).decode(),
            "url": "https://example.com/api/v2/items/%s?page=%d" % (rand_digits(8), R.randrange(100)),
            "code": "let total = items.iter().map(|x| x.price * %d).sum::<u64>();" % R.randrange(100),
            "cron": "*/%d * * * *" % R.randrange(1, 60),
            "hexaddr": "0x%016x" % R.getrandbits(64),
        }[kind]))
    return lines


def known_limits():
    """Cases the detectors get wrong by design, so the table shows their real trade-offs."""
    card_neg = [neg("order " + card("4", 16)) if R.random() < 0.1 else neg("order 4" + rand_digits(15)) for _ in range(40)]
    phone_pos = [ctx(str(R.randrange(2, 10)) + rand_digits(2) + str(R.randrange(2, 10)) + rand_digits(6)) for _ in range(20)]
    ipv4_neg = [neg("version %d.%d.%d.%d" % tuple(R.randrange(1, 20) for _ in range(4))) for _ in range(10)]
    email_pos = [ctx(R.choice(["jörg", "zoë", "josé.garcía"]) + "@example.de") for _ in range(10)]
    ssn_pos = [ctx("%03d%02d%04d" % (R.randrange(1, 666), R.randrange(1, 100), R.randrange(1, 10000))) for _ in range(10)]
    return card_neg, phone_pos, ipv4_neg, email_pos, ssn_pos


if __name__ == "__main__":
    card_neg, phone_pos, ipv4_neg, email_pos, ssn_pos = known_limits()
    write("common", [], common())
    p, n = cards()
    write("card", p, n + card_neg)
    p, n = phones()
    write("phone", p + phone_pos, n)
    p, n = emails()
    write("email", p + email_pos, n)
    p, n = ssns()
    write("ssn", p + ssn_pos, n)
    (p4, n4), (p6, n6) = ips()
    write("ipv4", p4, n4 + ipv4_neg)
    write("ipv6", p6, n6)
    write("iban", *ibans())
    for name, (p, n) in secrets().items():
        write(name, p, n)
    raise SystemExit(0)
    write("card", *cards())
    write("iban", *ibans())
    write("ssn", *ssns())
    write("phone", *phones())
    write("email", *emails())
    (p4, n4), (p6, n6) = ips()
    write("ipv4", p4, n4)
    write("ipv6", p6, n6)
    for name, (p, n) in secrets().items():
        write(name, p, n)
