//! UTC calendar formatting (and the little parsing needed) without a time
//! crate: the event log and the CLI print timestamps, the docker driver
//! reads the engine's.

/// Calendar fields of a UTC instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Utc {
    /// From seconds since the Unix epoch (civil-from-days, Howard Hinnant).
    pub fn from_unix(secs: i64) -> Utc {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Utc {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// Seconds since the Unix epoch (days-from-civil, Howard Hinnant).
    pub fn to_unix(self) -> i64 {
        let (month, day) = (i64::from(self.month), i64::from(self.day));
        let year = if month <= 2 { self.year - 1 } else { self.year };
        let era = year.div_euclid(400);
        let yoe = year - era * 400;
        let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// A UTC RFC 3339 time as engines write it
    /// (`2026-11-30T06:10:05.123456789Z`); fractions are dropped.
    pub fn parse_rfc3339(text: &str) -> Option<Utc> {
        let (date, time) = text.split_once('T')?;
        let mut d = date.splitn(3, '-');
        let mut t = time.splitn(3, ':');
        let utc = Utc {
            year: d.next()?.parse().ok()?,
            month: d.next()?.parse().ok()?,
            day: d.next()?.parse().ok()?,
            hour: t.next()?.parse().ok()?,
            minute: t.next()?.parse().ok()?,
            second: t.next()?.get(..2)?.parse().ok()?,
        };
        let valid = (1..=12).contains(&utc.month)
            && (1..=31).contains(&utc.day)
            && utc.hour < 24
            && utc.minute < 60
            && utc.second < 61;
        valid.then_some(utc)
    }

    /// `2026-11-25T08:30:00.123Z`
    pub fn rfc3339_millis(self, millis: u32) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `2026-11-25 08:30:00` (the CLI's CREATED column).
    pub fn date_time(self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(
            Utc::from_unix(0).rfc3339_millis(0),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Utc::from_unix(951_782_400).rfc3339_millis(5),
            "2000-02-29T00:00:00.005Z"
        );
        assert_eq!(
            Utc::from_unix(1_795_000_000).date_time(),
            "2026-11-18 11:06:40"
        );
        assert_eq!(Utc::from_unix(-1).date_time(), "1969-12-31 23:59:59");
    }

    #[test]
    fn engine_times_parse_back_to_epoch_seconds() {
        let secs = |t: &str| Utc::parse_rfc3339(t).map(Utc::to_unix);
        assert_eq!(secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(secs("2026-11-30T06:10:05.123456789Z"), Some(1_796_019_005));
        assert_eq!(secs("2000-02-29T12:00:00Z"), Some(951_825_600));
        assert_eq!(secs("garbage"), None);
        assert_eq!(secs("2026-13-01T00:00:00Z"), None);
        for t in [0, 951_782_400, 1_795_000_000, -1] {
            assert_eq!(Utc::from_unix(t).to_unix(), t);
        }
    }
}
