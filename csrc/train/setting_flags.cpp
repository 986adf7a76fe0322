#include "setting_flags.h"

using nlohmann::json;

namespace rational_train {

SettingFlags::SettingFlags(CLI::App& app, const json& defaults) {
  for (auto& s : settings()) {
    bound_.push_back(Bound{&s, nullptr, "", false});
    Bound& b = bound_.back();
    const json& def = defaults.at(json_pointer(s));
    if (s.kind == SettingKind::Bool) {
      b.option = app.add_flag(s.cli_names, b.flag_value, s.help + " (default: " + format_value(s, def) + ")");
    } else {
      // Given twice, the last one counts (as a flag counts over --config).
      b.option = app.add_option(s.cli_names, b.text, s.help)
                     ->type_name(type_label(s))
                     ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
      // Every default is shown, also the empty ones ('' or null: derived, as the help says).
      b.option->default_str(format_value(s, def));
    }
  }
}

json SettingFlags::apply(json config) const {
  for (auto& b : bound_) {
    if (b.option->count() == 0) continue;
    config[json_pointer(*b.setting)] =
        b.setting->kind == SettingKind::Bool ? json(b.flag_value) : parse_flag_value(*b.setting, b.text);
  }
  return config;
}

}  // namespace rational_train
