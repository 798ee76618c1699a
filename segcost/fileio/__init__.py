"""Safe file I/O: the small files segcost reads, and every file it writes.

One concept a module:

* `paths`: paths as given (`check_path_text`) and file-kind names for messages;
* `reads`: the one reader of configs, budgets files, baselines, profiles and sweep specs
  (`read_text_file`, `read_toml_file`, `read_json_file`);
* `protected`: the files a command reads, which no output may be (`refuse_same_file`,
  `note_held_input`);
* `writes`: atomic writes that never leave half a file or replace a device (`write_atomic`,
  `install`, `destination`);
* `plan`: a command's outputs checked together before the first write (`OutputPlan`);
* `numbers`: counts, decimals and input shapes in text, ASCII digits only (`parse_input_shapes`);
* `csvtext`: the CSV writers, with text cells escaped against formula injection (`SafeWriter`,
  `SafeDictWriter`).

Import from those modules; the names are re-exported here for callers outside the package
(scripts, the security tests) that use `segcost.fileio.write_atomic`.
"""

from segcost.fileio.paths import PathLike, check_path_text
from segcost.fileio.plan import OutputPlan
from segcost.fileio.protected import forget_read_inputs, note_held_input, refuse_same_file
from segcost.fileio.reads import MAX_BASELINE_BYTES, MAX_CONFIG_BYTES, read_json_file, read_text_file, read_toml_file
from segcost.fileio.writes import Destination, destination, install, write_atomic

__all__ = ["MAX_BASELINE_BYTES", "MAX_CONFIG_BYTES", "Destination", "OutputPlan", "PathLike", "check_path_text",
           "destination", "forget_read_inputs", "install", "note_held_input", "read_json_file", "read_text_file",
           "read_toml_file", "refuse_same_file", "write_atomic"]
