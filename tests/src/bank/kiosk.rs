//! One simulated kiosk: random registrations, palm enrollments, cash deposits and
//! withdrawals (with its till cashier signed in), password logins, payments by session and
//! by palm, transfers, and (as the operator) refunds. Every keyed request is sent until it
//! is answered ([`Call::send`]); its first answer is recorded, and one in eight is replayed
//! at once with the same key to see that the server gives the same answer back.

use super::http::{Answer, Call, Target};
use super::palm::{b64, capture, palm};
use super::rng::Rng;
use super::world::{stored, Op, Paid, Record, Sender, World};
use reqwest::Client;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// Every simulated shopper's password (the run's secrets are not secret).
pub const PASSWORD: &str = "bank-test-password";
/// The PIN of each merchant's till cashier `Till`.
pub const TILL_PIN: &str = "2468";

pub struct Kiosk {
    pub idx: usize,
    pub merchant: String,
    pub client: Client,
    pub to: Target,
    pub admin: Client,
    pub admin_to: Target,
    pub world: Arc<World>,
    pub rng: Rng,
    /// Whether to enroll palms and pay by palm.
    pub palms: bool,
    pub cashier: Option<String>,
    /// Shopper sessions opened at this kiosk: name and token.
    pub sessions: Vec<(String, String)>,
    pub seq: u64,
}

pub fn eur(minor: i64) -> Value {
    json!({"amount": format!("{}.{:02}", minor / 100, minor % 100), "currency": "EUR"})
}

impl Kiosk {
    /// Runs random operations until `until`; the last one is finished, answered.
    pub async fn run(mut self, until: Instant) -> Kiosk {
        while Instant::now() < until {
            self.step().await;
        }
        self
    }

    async fn step(&mut self) {
        let few = self.world.shoppers.lock().expect("poisoned").len() < 4;
        let roll = if few { 99 } else { self.rng.below(100) };
        match roll {
            0..=21 => self.deposit().await,
            22..=44 => self.payment().await,
            45..=57 => self.transfer().await,
            58..=67 => self.withdrawal().await,
            68..=73 => self.refund().await,
            74..=81 if self.palms => self.palm_payment().await,
            74..=81 => self.payment().await,
            82..=88 => self.fresh_login().await,
            _ => self.register().await,
        }
    }

    fn key(&mut self) -> String {
        self.seq += 1;
        format!("k{}-{}", self.idx, self.seq)
    }

    /// Sends a keyed request, records its first answer, sometimes replays it at once. One
    /// request in twelve also goes twice at the same moment (to the other replica, if any):
    /// both copies must get the same answer.
    async fn keyed(&mut self, op: Op, call: Call, sender: Sender) -> Option<Answer> {
        let w = self.world.clone();
        let (c, to) = match sender {
            Sender::Kiosk(_) => (self.client.clone(), self.to.clone()),
            Sender::Admin => (self.admin.clone(), self.admin_to.clone()),
        };
        w.count(&w.counters.attempted, 1);
        let twin = self.rng.one_in(12).then(|| {
            let (c, call) = (c.clone(), call.clone());
            let to = Target {
                bases: to.bases.clone(),
                home: to.home + 1,
            };
            tokio::spawn(async move { call.send(&c, &to).await })
        });
        let sent = Instant::now();
        let (answer, retries) = call.send(&c, &to).await;
        w.count(&w.counters.retries, retries);
        let a = match answer {
            Ok(a) => a,
            Err(last) => {
                w.violation(format!("{op:?} never answered within the deadline: {last}"));
                return None;
            }
        };
        self.tally(&a, op.kind(), sent.elapsed());
        let a = match twin {
            Some(twin) => self.settle(&op, a, twin.await.ok().map(|t| t.0)),
            None => a,
        };
        if !stored(&a) {
            return Some(a);
        }
        let rec = Record {
            sender,
            merchant: self.merchant.clone(),
            op,
            call,
            first: a.clone(),
        };
        if self.rng.one_in(8) {
            replay(&w, &c, &to, &rec).await;
        }
        w.records.lock().expect("poisoned").push(rec);
        Some(a)
    }

    /// The request's answer from two copies sent at once. An answer decided before the
    /// command (`rate_limited`, `palm_not_recognised`) is not stored with the key, so the
    /// other copy may then run the command: its stored answer is the request's. Two stored
    /// answers must be the same.
    fn settle(&self, op: &Op, a: Answer, twin: Option<Result<Answer, String>>) -> Answer {
        let w = &self.world;
        w.count(&w.counters.replays, 1);
        match twin {
            Some(Ok(b)) if stored(&b) && !stored(&a) => b,
            Some(Ok(b)) if b == a || !stored(&b) => a,
            other => {
                w.violation(format!(
                    "concurrent duplicate of {op:?} answered {other:?}, the other {a:?}"
                ));
                a
            }
        }
    }

    fn tally(&self, a: &Answer, what: &str, took: std::time::Duration) {
        let w = &self.world;
        w.answered(what, a, took);
        if a.status >= 500 {
            w.violation(format!("{} answered to a {what}: {}", a.status, a.body));
        }
    }

    async fn register(&mut self) {
        let name = format!("s{}x{}", self.idx, self.seq + 1);
        let body =
            json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD});
        let call = Call::new("/v1/shoppers", Some(self.key()), body);
        let op = Op::Register { name: name.clone() };
        let ok = self
            .keyed(op, call, Sender::Kiosk(self.idx))
            .await
            .is_some_and(|a| a.ok());
        if ok {
            self.world
                .shoppers
                .lock()
                .expect("poisoned")
                .push(name.clone());
            if self.palms && self.rng.one_in(3) {
                self.enroll(&name).await;
            }
        }
    }

    async fn enroll(&mut self, name: &str) {
        let Some(token) = self.session_for(name).await else {
            return;
        };
        let seed = palm_seed(name);
        let hand = palm(seed);
        let templates: Vec<String> = (0..3).map(|i| b64(&capture(&hand, seed + i))).collect();
        let mut call = Call::new(
            "/v1/palms",
            Some(self.key()),
            json!({ "templates": templates }),
        );
        call.token = Some(token);
        let op = Op::Enroll { name: name.into() };
        if self
            .keyed(op, call, Sender::Kiosk(self.idx))
            .await
            .is_some_and(|a| a.ok())
        {
            self.world
                .palms
                .lock()
                .expect("poisoned")
                .push((name.into(), seed));
        }
    }

    /// A cash deposit at the till (1.00 to 20.00).
    async fn deposit(&mut self) {
        let Some(name) = self.world.random_shopper(self.rng.next_u64()) else {
            return;
        };
        let Some(desk) = self.cashier().await else {
            return;
        };
        let minor = self.rng.between(100, 2000) as i64;
        let body = json!({"username": name, "amount": eur(minor)});
        let mut call = Call::new("/v1/deposits", Some(self.key()), body);
        call.cashier = Some(desk);
        self.keyed(Op::Deposit { name, minor }, call, Sender::Kiosk(self.idx))
            .await;
    }

    async fn payment(&mut self) {
        let Some((name, token)) = self.some_session().await else {
            return;
        };
        let minor = self.rng.between(1, 300) as i64;
        let mut call = Call::new(
            "/v1/payments",
            Some(self.key()),
            json!({"amount": eur(minor)}),
        );
        call.token = Some(token);
        let a = self
            .keyed(
                Op::Payment {
                    name: name.clone(),
                    minor,
                },
                call,
                Sender::Kiosk(self.idx),
            )
            .await;
        self.after_debit(&name, a, minor);
    }

    async fn palm_payment(&mut self) {
        let pick = self.rng.next_u64();
        let chosen = {
            let p = self.world.palms.lock().expect("poisoned");
            (!p.is_empty()).then(|| p[pick as usize % p.len()].clone())
        };
        let Some((owner, seed)) = chosen else {
            return self.payment().await;
        };
        let probe = capture(&palm(seed), self.rng.next_u64() | 1 << 40);
        let minor = self.rng.between(1, 300) as i64;
        let body = json!({"template": b64(&probe), "amount": eur(minor)});
        let call = Call::new("/v1/payments/palm", Some(self.key()), body);
        let op = Op::PalmPayment {
            owner: owner.clone(),
            minor,
        };
        let a = self.keyed(op, call, Sender::Kiosk(self.idx)).await;
        if let Some(a) = a.filter(|a| a.ok()) {
            if a.body["shopper"] != owner.as_str() {
                self.world
                    .violation(format!("palm of {owner} paid as {}", a.body["shopper"]));
            }
            self.paid(&a, minor);
        }
    }

    async fn transfer(&mut self) {
        let Some((from, token)) = self.some_session().await else {
            return;
        };
        let to = match self.rng.one_in(20) {
            true => from.clone(), // refused: same_account
            false => self
                .world
                .random_shopper(self.rng.next_u64())
                .unwrap_or_default(),
        };
        let minor = self.rng.between(1, 500) as i64;
        let mut call = Call::new(
            "/v1/transfers",
            Some(self.key()),
            json!({"to_username": to, "amount": eur(minor)}),
        );
        call.token = Some(token);
        let op = Op::Transfer {
            from: from.clone(),
            to,
            minor,
        };
        let a = self.keyed(op, call, Sender::Kiosk(self.idx)).await;
        self.after_debit(&from, a, minor);
    }

    async fn withdrawal(&mut self) {
        let Some((name, token)) = self.some_session().await else {
            return;
        };
        let Some(desk) = self.cashier().await else {
            return;
        };
        let minor = self.rng.between(1, 500) as i64;
        let mut call = Call::new(
            "/v1/withdrawals",
            Some(self.key()),
            json!({"amount": eur(minor)}),
        );
        call.token = Some(token);
        call.cashier = Some(desk);
        let a = self
            .keyed(
                Op::Withdrawal {
                    name: name.clone(),
                    minor,
                },
                call,
                Sender::Kiosk(self.idx),
            )
            .await;
        self.after_debit(&name, a, minor);
    }

    /// An operator refund of an acknowledged payment: part of it, all of it, or a cent more
    /// than it (refused: `refund_exceeds_payment`, or less was left).
    async fn refund(&mut self) {
        let pick = self.rng.next_u64();
        let chosen = {
            let p = self.world.payments.lock().expect("poisoned");
            (!p.is_empty()).then(|| p[pick as usize % p.len()].clone())
        };
        let Some(paid) = chosen else { return };
        let minor = match self.rng.below(4) {
            0 => paid.minor,
            1 => paid.minor + 1,
            _ => self.rng.between(1, paid.minor as u64) as i64,
        };
        let body = json!({"payment_id": paid.tx, "amount": eur(minor), "reason": "bank test"});
        let key = format!("a{}-{}", self.idx, self.seq + 1);
        self.seq += 1;
        let call = Call::new("/v1/admin/refunds", Some(key), body);
        self.keyed(
            Op::Refund {
                payment: paid.tx,
                minor,
            },
            call,
            Sender::Admin,
        )
        .await;
    }

    /// After a debit by session: a payment is remembered for refunds; an expired session is
    /// forgotten (a new login follows).
    fn after_debit(&mut self, name: &str, a: Option<Answer>, minor: i64) {
        match a {
            Some(a) if a.ok() && a.body["kind"] == "payment" => self.paid(&a, minor),
            Some(a) if a.code() == "session_expired" => self.sessions.retain(|(n, _)| n != name),
            _ => {}
        }
    }

    fn paid(&self, a: &Answer, minor: i64) {
        if let Some(tx) = a.body["transaction_id"].as_i64() {
            self.world
                .payments
                .lock()
                .expect("poisoned")
                .push(Paid { tx, minor });
        }
    }

    /// Logs a random shopper in anew (the old session, if any, is replaced).
    async fn fresh_login(&mut self) {
        let Some(name) = self.world.random_shopper(self.rng.next_u64()) else {
            return;
        };
        self.sessions.retain(|(n, _)| *n != name);
        self.session_for(&name).await;
    }

    /// A shopper with a session at this kiosk: mostly one already open, else a new login.
    async fn some_session(&mut self) -> Option<(String, String)> {
        if !self.sessions.is_empty() && !self.rng.one_in(4) {
            let i = self.rng.below(self.sessions.len() as u64) as usize;
            return Some(self.sessions[i].clone());
        }
        let name = self.world.random_shopper(self.rng.next_u64())?;
        let token = self.session_for(&name).await?;
        Some((name, token))
    }

    async fn session_for(&mut self, name: &str) -> Option<String> {
        if let Some((_, t)) = self.sessions.iter().find(|(n, _)| n == name) {
            return Some(t.clone());
        }
        let body = json!({"method": "password", "username": name, "password": PASSWORD});
        let token = self.unkeyed("/v1/sessions", body).await?;
        self.sessions.push((name.into(), token.clone()));
        Some(token)
    }

    /// The till cashier's session at this kiosk, signed in on first use.
    async fn cashier(&mut self) -> Option<String> {
        if self.cashier.is_none() {
            let body = json!({"name": "Till", "pin": TILL_PIN});
            self.cashier = self.unkeyed("/v1/cashier-sessions", body).await;
        }
        self.cashier.clone()
    }

    /// A sign-in (no key: a lost one is simply made again); the token, or a violation.
    async fn unkeyed(&mut self, path: &str, body: Value) -> Option<String> {
        let w = self.world.clone();
        w.count(&w.counters.attempted, 1);
        let sent = Instant::now();
        let (answer, retries) = Call::new(path, None, body)
            .send(&self.client, &self.to)
            .await;
        w.count(&w.counters.retries, retries);
        let a = match answer {
            Ok(a) => a,
            Err(last) => {
                w.violation(format!("{path} never answered within the deadline: {last}"));
                return None;
            }
        };
        self.tally(&a, path, sent.elapsed());
        match a.body["token"].as_str() {
            Some(t) if a.ok() => Some(t.to_string()),
            _ => {
                w.violation(format!(
                    "{path} refused for a known account: {} {}",
                    a.status, a.body
                ));
                None
            }
        }
    }
}

/// The palm a shopper enrolls (seeded by the name, so the run can rebuild it).
fn palm_seed(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    })
}

/// Sends a recorded request again with the same key and body: the answer must be the first.
pub async fn replay(w: &World, c: &Client, to: &Target, rec: &Record) {
    w.count(&w.counters.replays, 1);
    let (answer, retries) = rec.call.send(c, to).await;
    w.count(&w.counters.retries, retries);
    match answer {
        Ok(a) if a == rec.first => {}
        Ok(a) => w.violation(format!(
            "replay of {:?} answered {} {} (first: {} {})",
            rec.op, a.status, a.body, rec.first.status, rec.first.body
        )),
        Err(last) => w.violation(format!("replay of {:?} never answered: {last}", rec.op)),
    }
}
