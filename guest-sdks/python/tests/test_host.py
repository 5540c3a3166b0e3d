"""Config, logs and PartnerError under plain CPython, through a LocalHost."""

import unittest

from sagahost_partner import (
    Level,
    PartnerError,
    all_config,
    config_or,
    debug,
    error,
    get_config,
    info,
    local_host,
    log,
    require_config,
    trace,
    warn,
)


class ConfigTest(unittest.TestCase):
    def test_config_reads_the_local_mapping(self):
        with local_host({"mdm-url": "https://mdm.example.com", "a": "1"}):
            self.assertEqual(get_config("mdm-url"), "https://mdm.example.com")
            self.assertIsNone(get_config("missing"))
            self.assertEqual(config_or("a", "2"), "1")
            self.assertEqual(config_or("missing", "2"), "2")
            self.assertEqual(require_config("a"), "1")
            self.assertEqual(all_config(), {"a": "1", "mdm-url": "https://mdm.example.com"})

    def test_an_empty_value_is_set_not_missing(self):
        with local_host({"column": ""}):
            self.assertEqual(config_or("column", "new_mdmid"), "")
            self.assertEqual(require_config("column"), "")

    def test_a_missing_required_key_is_a_partner_error_naming_the_key(self):
        with local_host({}):
            with self.assertRaises(PartnerError) as raised:
                require_config("erp-url")
        self.assertEqual(
            str(raised.exception), "config key `erp-url` is not set: add it to [partners.<name>.config]"
        )

    def test_local_host_is_undone_after_the_block(self):
        with local_host({"k": "inner"}):
            with local_host({"k": "nested"}):
                self.assertEqual(get_config("k"), "nested")
            self.assertEqual(get_config("k"), "inner")
        self.assertIsNone(get_config("k"))


class LogTest(unittest.TestCase):
    def test_each_level_is_written_in_order(self):
        with local_host() as host:
            trace("t")
            debug("d")
            info("i")
            warn("w")
            error("e")
            log(Level.INFO, "direct")
        self.assertEqual(
            host.lines,
            [
                (Level.TRACE, "t"),
                (Level.DEBUG, "d"),
                (Level.INFO, "i"),
                (Level.WARN, "w"),
                (Level.ERROR, "e"),
                (Level.INFO, "direct"),
            ],
        )


if __name__ == "__main__":
    unittest.main()
