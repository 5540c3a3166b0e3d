use super::*;

#[test]
fn decimals_use_the_decimal_layout() {
    let mut bytes = [0_u8; 16];
    bytes[2] = 10;
    bytes[8..16].copy_from_slice(&10_000_000_000_u64.to_le_bytes());
    assert_eq!(decimal_text(&bytes).as_deref(), Some("1.0000000000"));
    bytes[3] = 0x80;
    bytes[2] = 12;
    assert_eq!(decimal_text(&bytes).as_deref(), Some("-0.010000000000"));
    let mut max = [0xFF_u8; 16];
    max[..4].copy_from_slice(&[0, 0, 0, 0]);
    assert_eq!(decimal_text(&max).as_deref(), Some("79228162514264337593543950335"));
    bytes[2] = 29;
    assert_eq!(decimal_text(&bytes), None);
}

#[test]
fn date_times_keep_the_instant_whatever_the_kind() {
    // 2017-09-26T00:04:07Z in ticks.
    let ticks: u64 = 636_419_810_470_000_000;
    for kind in 0..3_u64 {
        assert_eq!(
            date_time_text(ticks | kind << 62).as_deref(),
            Some("2017-09-26T00:04:07Z"),
            "kind {kind}"
        );
    }
    assert_eq!(date_time_text(ticks | 3 << 62), None);
    assert_eq!(date_time_text(0).as_deref(), Some("0001-01-01T00:00:00Z"));
    assert_eq!(
        date_time_text(MAX_TICKS).as_deref(),
        Some("9999-12-31T23:59:59.9999999Z")
    );
}

#[test]
fn durations_follow_xml_convert() {
    assert_eq!(duration_text(0), "PT0S");
    assert_eq!(duration_text(36_000_000_000), "PT1H");
    assert_eq!(
        duration_text(-(864_000_000_000 + 72_000_000_000 + 1_800_000_000 + 45_000_000)),
        "-P1DT2H3M4.5S"
    );
    assert_eq!(duration_text(864_000_000_000), "P1D");
}
