"""Red-team scenarios: event files for `smsguard replay`, one per evasion tried (docs/redteam.md).

    python scripts/redteam_scenarios.py OUTDIR
    smsguard replay OUTDIR/s14_single_port_drip.jsonl -o decisions.jsonl --summary summary.json

Events carrying a "label" field (ignored by the engine) name the variant tried; the texts are made up here, none
comes from the data files.
"""
import json, random, os, sys
from datetime import datetime, timezone, timedelta
OUT = sys.argv[1] if len(sys.argv) > 1 else "redteam-scenarios"
os.makedirs(OUT, exist_ok=True)
CN = timezone(timedelta(hours=8))
def ms(y, mo, d, h, mi=0, s=0): return int(datetime(y, mo, d, h, mi, s, tzinfo=CN).timestamp() * 1000)
DAY = ms(2024, 11, 12, 10)     # 10:00 China, an ordinary Tuesday
NIGHT = ms(2024, 11, 12, 22)
rnd = random.Random(7)
def rcpt(i): return f"139{i:08d}"
SPAM = ["无抵押信用贷款，当天放款，最高{n}万，详询138{p}王经理",
        "澳门威尼斯人线上娱乐，注册送{n}元彩金，网址 www.vns{n}.com",
        "代开各类发票，增值税普通发票，联系139{p}刘先生",
        "急用钱？无抵押贷款{n}万当天到账，微信dk{n}abc咨询",
        "六合彩内部资料，期期必中，联系QQ{p}"]
CODES = ["您的验证码是{c}，5分钟内有效，请勿泄露。", "【{sig}】验证码{c}，用于登录，10分钟内有效。"]
def spam_text(i):
    return SPAM[i % len(SPAM)].format(n=rnd.randint(10, 99), p=f"{rnd.randint(0, 99999999):08d}")
def ev(i, ts, port, content, r, sig=None, cat=None, sp="sp-x"):
    e = {"msg_id": f"m{port}-{i}-{ts}", "ts": ts, "port": port, "recipient": rcpt(r), "content": content, "sp_id": sp}
    if sig: e["signature"] = sig
    if cat: e["category"] = cat
    return e
def write(name, evs):
    with open(f"{OUT}/{name}.jsonl", "w") as fh:
        for e in evs: fh.write(json.dumps(e, ensure_ascii=False) + "\n")
    print(name, len(evs))

def blast(port, start, per_min, minutes, text_fn, sig=None, cat=None, r0=0, sp="sp-x"):
    out, k = [], 0
    for m in range(minutes):
        for j in range(per_min):
            ts = start + m * 60_000 + j * (60_000 // per_min)
            out.append(ev(k, ts, port, text_fn(k), r0 + k, sig, cat, sp)); k += 1
    return out

# S1 baseline: 30/min of plain spam for 30 min, daytime
write("s01_baseline", blast("10691001", DAY, 30, 30, spam_text))
# S2 the same spam with a signature and 回T退订 ("compliant-looking")
write("s02_compliant_spam", blast("10691002", DAY, 30, 30, lambda k: spam_text(k) + "，回T退订", sig="鑫融贷", cat="marketing"))
# S3 slow drip: 19 per 10 min per port, 20 ports, 3 hours
evs = []
for p in range(20):
    port = f"1069200{p:02d}"
    for k in range(19 * 18):
        ts = DAY + k * (600_000 // 19) + p * 1000
        evs.append(ev(k, ts, port, spam_text(k), p * 10000 + k))
write("s03_slow_drip", evs)
# S4 dilution: 1 spam per 4 codes (20% spam), 50/min for 30 min
def dil(k):
    return spam_text(k) if k % 5 == 0 else CODES[0].format(c=rnd.randint(100000, 999999))
write("s04_dilution", blast("10691004", DAY, 50, 30, dil))
# S4b dilution declared: codes declared verification
evs = blast("10691005", DAY, 50, 30, dil)
for e in evs:
    if "验证码" in e["content"]: e["category"] = "verification"
write("s04b_dilution_declared", evs)

# S3b slow drip with a unique wording per port (synonym rotation): 20 ports
SYN = {"无抵押": ["无抵押", "免抵押", "不用抵押", "零抵押"], "信用贷款": ["信用贷款", "信用贷", "信贷", "个人贷款"],
       "当天放款": ["当天放款", "当日到账", "秒批秒到", "极速放款"], "详询": ["详询", "咨询", "联系", "致电"],
       "王经理": ["王经理", "李经理", "张主管", "刘顾问"]}
def rot(k):
    t = "无抵押信用贷款，当天放款，最高{n}万，详询138{p}王经理"
    for w, alts in SYN.items(): t = t.replace(w, alts[(k // (4 ** list(SYN).index(w))) % 4])
    return t.format(n=rnd.randint(10, 99), p=f"{rnd.randint(0, 99999999):08d}")
evs = []
for p in range(20):
    port = f"1069300{p:02d}"
    for k in range(19 * 18):
        ts = DAY + k * (600_000 // 19) + p * 1000
        evs.append(ev(k, ts, port, rot(p * 37 + k * 101), p * 10000 + k))
write("s03b_slow_drip_rotated", evs)

# S5 opt-out evasion
def optout(ts, r, port, sig=None):
    e = {"type": "optout", "ts": ts, "recipient": rcpt(r), "port": port, "keyword": "TD"}
    if sig: e["signature"] = sig
    return e
M = "【{sig}】会员专享，全场低至5折，回T退订"
evs = [optout(DAY, 1, "10695001", "优品汇"), optout(DAY, 2, "10695001")]
t = DAY + 60_000
cases = [("same sig same port", "10695001", "优品汇", 1), ("new sig same port", "10695001", "优品会", 1),
         ("same sig other port", "10695002", "优品汇", 1), ("new sig other port", "10695002", "悦品汇", 1),
         ("port optout, new sig same port", "10695001", "悦品汇", 2), ("port optout, other port", "10695002", "优品汇", 2),
         ("homoglyph sig", "10695001", "优品匯", 1), ("sig with space", "10695001", "优 品 汇", 1),
         ("latin lookalike sig", "10695001", "优品汇‬", 1)]
for i, (label, port, sig, r) in enumerate(cases):
    evs.append({"msg_id": f"opt-{i}", "ts": t + i * 1000, "port": port, "recipient": rcpt(r), "content": M.format(sig=sig),
                "category": "marketing", "sp_id": "sp-x", "label": label})
# declared notification, same recipient
evs.append({"msg_id": "opt-notif", "ts": t + 20_000, "port": "10695001", "recipient": rcpt(1), "content": "【优品汇】尊敬的会员，您的账户积分即将清零，登录领取好礼 t.cn/xyz",
            "category": "notification", "sp_id": "sp-x", "label": "declared notification, soft promo"})
evs.append({"msg_id": "opt-notif2", "ts": t + 21_000, "port": "10695001", "recipient": rcpt(1), "content": "【优品汇】会员日全场五 折，速来",
            "category": "notification", "sp_id": "sp-x", "label": "declared notification, separated 五 折"})
evs.append({"msg_id": "opt-notif3", "ts": t + 22_000, "port": "10695001", "recipient": rcpt(1), "content": "【优品汇】您的账户有一张优惠券待领取，全场5折",
            "category": "notification", "sp_id": "sp-x", "label": "declared notification, strong cue + 账户 transaction word"})
evs.append({"msg_id": "opt-ver", "ts": t + 23_000, "port": "10695001", "recipient": rcpt(1), "content": "【优品汇】验证码1234，新人注册即送50元红包，全场5折",
            "category": "verification", "sp_id": "sp-x", "label": "declared verification with promo"})
write("s05_optout", evs)

# S6 night sending, tz trick in ts string and category trick
evs = []
for i, (ts, cat, label) in enumerate([
        ("2024-11-12T23:30:00+08:00", "marketing", "23:30 CN"),
        ("2024-11-12T10:30:00-05:00", "marketing", "ts written in -05:00 (=23:30 CN)"),
        ("2024-11-12T15:30:00Z", "marketing", "UTC 15:30 (=23:30 CN)"),
        ("2024-11-12T23:30:00+08:00", "notification", "declared notification"),
        ("2024-11-12T23:30:00+08:00", None, "undeclared")]):
    evs.append({"msg_id": f"n{i}", "ts": ts, "port": "10696001", "recipient": rcpt(100 + i), "content": "【优品汇】会员专享，新品上市，回T退订",
                "category": cat, "sp_id": "sp-x", "label": label})
    if cat is None: del evs[-1]["category"]
write("s06_night", evs)

# S7 cue evasions: night (22:30), recipient opted out of the signature; the texts say they sell, written so that
# the engine's marketing rules (on NFKC-only text) miss the cue words
NIGHT2 = ms(2024, 11, 12, 22, 30)
texts = [("plain, undeclared", None, "【优品汇】会员日大促，全场5折包邮"),
         ("traditional, undeclared", None, "【优品汇】會員日大促銷，全場5折包郵"),
         ("separated, undeclared", None, "【优品汇】会员日大·促，全场5·折，包·邮"),
         ("spaced, declared notification", "notification", "【优品汇】会员日大 促，全场五 折包 邮"),
         ("traditional, declared notification", "notification", "【优品汇】會員日全場五折，優惠券限時領取"),
         ("combining marks, undeclared", None, "【优品汇】会员日大̶促̶，全场五̶折̶包̶邮̶"),
         ("fullwidth 双１１, declared notification", "notification", "【优品汇】双１１狂欢，全场低至五折"),
         ("plain, declared notification", "notification", "【优品汇】会员日大促，全场5折包邮")]
evs = [optout(NIGHT2 - 600_000, 50, "10697001", "优品汇")]
for i, (label, cat, text) in enumerate(texts):
    e = {"msg_id": f"c{i}", "ts": NIGHT2 + i * 1000, "port": "10697001", "recipient": rcpt(50), "content": text,
         "sp_id": "sp-x", "label": label}
    if cat: e["category"] = cat
    evs.append(e)
write("s07_cue_evasion", evs)

# S8 signature rotation on one port: 9 signatures an hour (port_signatures low=10), 40/min spam, with registry none
sigs = [f"商户{i}" for i in range(9)]
write("s08_sig_rotation", blast("10698001", DAY, 40, 60, spam_text, sig=None) )
evs = blast("10698002", DAY, 40, 60, spam_text)
for k, e in enumerate(evs): e["signature"] = sigs[k % 9]
write("s08b_sig_rotation_9", evs)
# S9 a fully unique wording per message (template generator), 12 ports x 15/10min, 2 h: no template repeats
OPEN = ["急用钱？", "缺资金？", "资金周转难？", "想创业没本钱？", "信用卡还不上？", ""]
OFFER = ["无抵押信用贷款", "免抵押个人贷", "不看征信小额贷", "零门槛信用借款", "纯信用贷"]
SPEED = ["当天放款", "当日到账", "秒批秒到", "极速放款", "一小时下款", "随借随还"]
CALL = ["详询", "咨询", "联系", "致电", "速联", "欢迎来电"]
WHO = ["王经理", "李经理", "张主管", "刘顾问", "陈小姐", "赵先生"]
def uniq(k):
    r = random.Random(k)
    return (r.choice(OPEN) + r.choice(OFFER) + "，" + r.choice(SPEED) + "，额度" + str(r.randint(1, 50)) + "万，" +
            r.choice(CALL) + "13" + f"{r.randint(0, 999999999):09d}" + r.choice(WHO))
evs = []
for p in range(12):
    port = f"1069900{p:02d}"
    for k in range(15 * 12):
        ts = DAY + k * 40_000 + p * 1500
        evs.append(ev(k, ts, port, uniq(p * 100000 + k), p * 10000 + k))
write("s09_unique_wording_drip", evs)
# S10 hysteresis hover: a port at 50/min alternating 10 min spam-heavy (35%) and 10 min clean (10%)
evs, k = [], 0
for m in range(120):
    share = 0.35 if (m // 10) % 2 == 0 else 0.10
    for j in range(50):
        ts = DAY + m * 60_000 + j * 1200
        t = spam_text(k) if (j / 50) < share else CODES[0].format(c=rnd.randint(100000, 999999))
        evs.append(ev(k, ts, "10691010", t, k)); k += 1
write("s10_hover", evs)
# S11 "双11 look": spam dressed as a campaign: signature + 回T退订 + 双11 words, 200/min for 30 min
write("s11_double11_look", blast("10691011", ms(2024, 11, 11, 10), 200, 30,
      lambda k: "双11狂欢，" + spam_text(k) + "，回T退订", sig="双11特惠", cat="marketing"))
# S12 fake unsubscribe wording
fakes = [("退订请联系客服", "退订请联系客服"), ("无需退订", "本短信无需退订"), ("退订回复T(收费1元)", "退订回复T(1元/条)"),
         ("退订加微信", "退订请加微信dk888abc"), ("T退 (no 订)", "回T退"), ("拒收请回复R", "拒收请回复R")]
evs = []
for i, (label, tail) in enumerate(fakes):
    evs.append({"msg_id": f"f{i}", "ts": DAY + i * 1000, "port": "10691012", "recipient": rcpt(300 + i),
                "content": "【鑫融贷】无抵押信用贷款，当天放款，最高50万，详询13812345678王经理，" + tail,
                "category": "marketing", "sp_id": "sp-x", "label": label})
write("s12_fake_unsub", evs)
# S13 per-recipient caps: 60 messages/day to one recipient, rotating signatures (cap counts per signature) and
# one changed character per message (identical_content counts exact content)
evs = []
for i in range(60):
    evs.append({"msg_id": f"r{i}", "ts": DAY + i * 60_000, "port": "10691013", "recipient": rcpt(999),
                "content": f"【店{i % 6}】会员专享福利，全场低至5折{'!' * (i % 7)}，回T退订", "category": "marketing",
                "sp_id": "sp-x", "label": f"msg {i}"})
write("s13_rcpt_caps", evs)

# S14 one port, slow drip 19 per 10 min, 6 hours, daytime, plain spam
evs = []
for k in range(19 * 36):
    ts = DAY + k * (600_000 // 19)
    evs.append(ev(k, ts, "10691014", spam_text(k), k))
write("s14_single_port_drip", evs)
# S14b the same at 25 per 10 min (above min_volume)
evs = []
for k in range(25 * 36):
    ts = DAY + k * (600_000 // 25)
    evs.append(ev(k, ts, "10691015", spam_text(k), k))
write("s14b_single_port_25", evs)

# S15 text evasions against the classifier (one message each)
base = "澳门威尼斯人线上娱乐，注册送88元彩金，网址 www.vns88.com"
variants = [("plain", base),
    ("URL 点com", base.replace("www.vns88.com", "vns88点com")),
    ("URL 【.】", base.replace("www.vns88.com", "vns88【.】com")),
    ("URL 。com", base.replace("www.vns88.com", "vns88。com")),
    ("emoji art + 点com", "🎰🎰🎰澳门🎲线上🎲娱乐🎰注册送💰88💰彩金👉vns88点com"),
    ("phone as ⑴⑶⑻", "无抵押信用贷款，当天放款，详询⑴⑶⑻⑴⑵⑶⑷⑸⑹⑺⑻王经理"),
    ("phone as ❶❸❽", "无抵押信用贷款，当天放款，详询❶❸❽❶❷❸❹❺❻❼❽王经理"),
    ("phone 138.1234.5678", "无抵押信用贷款，当天放款，详询138.1234.5678王经理"),
    ("pinyin", "wu di ya xin yong dai kuan, dang tian fang kuan, xiang xun 13812345678 wang jing li"),
    ("short soft", "缺钱找我，秒到，138 1234 5678"),
    ("sig + 回T退订 loan", "【鑫融贷】无抵押信用贷款，当天放款，最高50万，详询13812345678王经理，回T退订"),
    ("sig + 回T退订 + 点com", "【鑫融贷】无抵押信用贷款，当天放款，最高50万，dk88点com，回T退订"),
    ("sig + 回T退订 + 〡", "【鑫融贷】无〡抵〡押信用贷款，当天放款，最高50万，详询13812345678王经理，回T退订")]
with open(f"{OUT}/s15_text.jsonl", "w") as fh:
    for i, (label, t) in enumerate(variants):
        fh.write(json.dumps({"msg_id": f"x{i}", "ts": DAY + i * 1000, "port": "10691015", "recipient": rcpt(700 + i),
                             "content": t, "sp_id": "sp-x", "label": label}, ensure_ascii=False) + "\n")

# S10b the hover of s10 with notices instead of codes between the spam: spam_share judges a port beside its codes
# (red team #6), so codes no longer dilute; notices still do. Written last: it draws from the shared random stream
NOTICES = ["您的快件SF{c}已签收，如有疑问请致电95338。", "您的订单{c}已发货，请注意查收。"]
evs, k = [], 0
for m in range(120):
    share = 0.35 if (m // 10) % 2 == 0 else 0.10
    for j in range(50):
        ts = DAY + m * 60_000 + j * 1200
        t = spam_text(k) if (j / 50) < share else NOTICES[k % 2].format(c=rnd.randint(10 ** 9, 10 ** 10 - 1))
        evs.append(ev(k, ts, "10691020", t, k)); k += 1
write("s10b_hover_notices", evs)
# S4c dilution with the spam itself declared `verification` (docs/redteam.md, dilution (b)): s04b's mix, 1 spam in
# 5 and real codes between, every message declared a code. S4d: the same spam opening with a code's wording
# (您的验证码是…), to pass for one. Written after s10b: they draw from the shared random stream
for name, port, wrap in (("s04c_dilution_spam_declared_code", "10691006", lambda t: t),
                         ("s04d_dilution_spam_worded_as_code", "10691007",
                          lambda t: f"您的验证码是{rnd.randint(100000, 999999)}，{t}")):
    evs = blast(port, DAY, 50, 30, lambda k: wrap(dil(k)) if k % 5 == 0 else dil(k), cat="verification")
    write(name, evs)
# S10c: s10's hover with every message declared `verification`, the spam too (made from s10's file: no random draw)
with open(f"{OUT}/s10_hover.jsonl") as fh:
    write("s10c_hover_declared_code", [{**json.loads(line), "category": "verification"} for line in fh])
