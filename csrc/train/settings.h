// The one table of rational_train's settings: for each, its command-line flag, its config-file
// key, its type and valid range, and whether a resumed run must keep it. The command line, the
// config reader, the range checks, the resume check, --help and the docs table (tested against
// docs/training.md) all come from this table, so they cannot drift apart.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace rational_train {

enum class SettingKind {
  String,
  Bool,
  Int,             // JSON integer (or an integral float) within int64
  UInt,            // non-negative integer within uint64 (the seed)
  Double,          // finite number
  OptionalDouble,  // finite number or null (null: derived from another setting)
  DoubleList,      // list of finite numbers; on the command line "a,b,c"
  Degrees,         // [m, n]; on the command line "m,n"
};

struct Setting {
  std::string flag;       // main flag, "--lr"
  std::string cli_names;  // CLI11 names: "--model,-m", "--hflip,!--no-hflip"
  std::string key;        // config key: "lr", "activation_options.degrees"
  SettingKind kind;
  // Range of the number(s): lo <= v (lo < v when lo_open) and v <= hi (v < hi when hi_open).
  std::optional<double> lo, hi;
  bool lo_open = false;
  // A resumed run must have the same value (it defines the model, its data or its training).
  bool defines_run = true;
  std::string help;
  bool hi_open = false;
};

const std::vector<Setting>& settings();
// nullptr for an unknown key / flag.
const Setting* setting_by_key(const std::string& key);
const Setting* setting_by_flag(const std::string& flag);

// "/activation_options/degrees" for "activation_options.degrees".
nlohmann::json::json_pointer json_pointer(const Setting& s);
// "--lr (config key lr)": how messages name a setting whose value may come from either source.
std::string describe(const Setting& s);
// The value as a user would type it on the command line ("5,4", "0.1,0.2", "adam", "on").
std::string format_value(const Setting& s, const nlohmann::json& v);
// The CLI11 type label: TEXT, INT, UINT, FLOAT, FLOATS, M,N.
std::string type_label(const Setting& s);

// A flag's text -> its JSON value: strict parsing (no trailing characters, no overflow, finite
// numbers, integers without a fraction), then the range. Throws std::invalid_argument "--flag: ...".
nlohmann::json parse_flag_value(const Setting& s, const std::string& text);
// A config file's value -> its normalised JSON value: type, integer-ness, range. Throws
// std::invalid_argument naming the key and the flag.
nlohmann::json check_config_value(const Setting& s, const nlohmann::json& v);
// Range check of an already typed value (both sources end here). Throws std::invalid_argument.
void check_range(const Setting& s, const nlohmann::json& v, const std::string& name);

}  // namespace rational_train
