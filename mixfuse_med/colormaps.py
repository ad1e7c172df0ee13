"""Colour maps for scalar PET/SPECT volumes, matching the pseudo-colour the network learned from.

The training pairs (Harvard Whole Brain Atlas) show PET through a jet-like map
on black (black, blue, yellow, red, magenta) and SPECT through the atlas'
black, grey-green, purple, orange, white map.  ``scripts/derive_colormaps.py``
recovered both 256-entry tables from those images (each atlas colour lies
within 3/255 of an entry); they are stored below as hex RGB.  "hot" and
"gray" are the usual analytic maps.

Colour maps take values in [0, 1] (clipped) and interpolate linearly between
entries; results are RGB in [0, 1], channels last, like ``mixfuse_med.color``.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)

# Derived by scripts/derive_colormaps.py from the training PNGs (see its docstring).

_PET_HEX = (
    "00000000000400000800000c00001000001400001800001c00002000002400002900002d00003100003500003900003d"
    "00004100004500004a00004e00005200005600005a00005e00006200006600006a00006e00007300007700007b00027f"
    "000582000786000a8a000c8f000f9300129700159b00179f001aa3001ca7001fab0021af0024b30027b8002abc002cc0"
    "002fc40031c80034cc0037d00039d4003cd9003edd0041e10044e50047e90049ed004cf1004ef50051f90054fe0357fc"
    "0659f80a5cf40e5ef01261ec1663e81a66e41e69e0226cdc266ed82a71d42e73d03276cc3679c83a7cc43e7ec04281bc"
    "4683b84a86b44e89b0528cac568ea85a91a45e93a062969c6699986a9c946e9e9072a18c76a3887aa6847ea98082ac7c"
    "85ae7989b1758db37191b66d95b86999bb659dbe61a1c05da5c359a9c555adc851b1cb4db5ce49b9d045bdd341c1d53d"
    "c5d839c9db35cdde31d1e02dd5e329d9e525dde821e1eb1de5ee19e9f015edf311f1f50df5f809f9fb05fdfe02fffd00"
    "fff900fff500fff100ffed00ffe900ffe500ffe100ffdd00ffd900ffd500ffd100ffcd00ffc900ffc500ffc100ffbd00"
    "ffb900ffb500ffb100ffad00ffa900ffa500ffa100ff9d00ff9900ff9500ff9100ff8d00ff8900ff8500ff8100ff7d00"
    "ff7a00ff7600ff7200ff6e00ff6a00ff6600ff6200ff5e00ff5a00ff5600ff5200ff4e00ff4a00ff4600ff4200ff3e00"
    "ff3a00ff3600ff3200ff2e00ff2a00ff2600ff2200ff1e00ff1a00ff1600ff1200ff0e00ff0a00ff0600ff0300ff0001"
    "ff0004ff0008ff000cff0010ff0014ff0018ff001cff0020ff0024ff0028ff002cff0030ff0034ff0038ff003cff0040"
    "ff0044ff0048ff004cff0050ff0054ff0058ff005cff0060ff0064ff0068ff006cff0070ff0074ff0078ff007cff0080"
    "ff0083ff0087ff008bff008fff0093ff0097ff009bff009fff00a3ff00a7ff00abff00afff00b3ff00b7ff00bbff00bf"
    "ff00c3ff00c7ff00cbff00cfff00d3ff00d7ff00dbff00dfff00e3ff00e7ff00ebff00efff00f3ff00f7ff00fbff00ff"
)
_SPECT_HEX = (
    "000000020303030505040707050809060a0b070d0d080f0f0910100a12120c15150c15160d17180f1a1b101c1d101c1d"
    "111f2013212214232415252616272818292a182a2b192b2c1b2f301c31321c31331d33351f363820373920393b223b3d"
    "233d3f243f412540422642442845472846482947492a444b2b434c2b424d2c404f2d3f502e3e512e3d522f3c53303a55"
    "31375833365933355a34345b35325d35315e372f60372f60372e61382b643a29663b27683b26693c256a3d246b3e226d"
    "3f216e3f206f3f206f401d72411c73421c73431a7544197645177845167946157a47137c47127d48127d49107f4a0e81"
    "4b0c834c0b844d09864d08874e07884f058a51038c52008f52008f53009056028f58048f5a068e5c078d5e098d600b8c"
    "610c8c620d8c65108b69138b6d158a6e178a6f1889711a88741c88751d88771f887920877c23867e24867f2586812786"
    "842a85852a85862b858a2e848b2f838c30838f3282913482933682953781973981993b809a3c809b3d809f407fa2437f"
    "a6457da7477da8487dab4a7cad4c7caf4e7cb04f7cb2507bb5537ab7547ab8557aba577abd5979be5a79bf5a77c05b73"
    "c15b72c15b70c25c6ec45c6cc55c6ac65d69c75d67c85e64c95e63c95e62cb5f5fcc5f5dcd5f5cce5f5acf6057d06156"
    "d16154d26152d36150d4624ed5624dd6624bd86347d86346d86345da6442db6541dc6540dd663dde663be06639e06637"
    "e16735e36833e46831e46830e5682ee7692ae8692ae86929ea6a26ea6a24eb6a23ec6b20ee6b1eef6c1cef6c1bf06c1a"
    "f26d16f36d15f36d14f56e11f66f0ef76f0ef86f0cf97009fa7008fb7006fc7104fd7102ff7200ff7302ff7507ff7810"
    "ff7912ff7a14ff7e1dff8023ff8124ff832aff8631ff8834ff8a39ff8c3eff8e44ff9049ff924cff9552ff985aff995c"
    "ff9a5fff9e68ff9f6cffa06dffa375ffa67bffa77effaa83ffac89ffae8effb093ffb297ffb49dffb7a3ffb8a5ffbaaa"
    "ffbdb3ffbeb5ffc0b7ffc3c0ffc5c5ffc6c8ffc9cdffcbd3ffcdd8ffcfdcffd1e1ffd4e7ffd6edffd7efffdaf6ffdeff"
)


def _from_hex(chunks: tuple[str, ...]) -> np.ndarray:
    text = "".join(chunks)
    table = np.frombuffer(bytes.fromhex(text), dtype=np.uint8).reshape(-1, 3)
    return table.astype(np.float32) / 255.0


def _hot(entries: int = 256) -> np.ndarray:
    """Black -> red -> yellow -> white (matplotlib's "hot" breakpoints)."""
    x = np.linspace(0.0, 1.0, entries)
    red = np.clip(x / 0.365079, 0, 1)
    green = np.clip((x - 0.365079) / (0.746032 - 0.365079), 0, 1)
    blue = np.clip((x - 0.746032) / (1.0 - 0.746032), 0, 1)
    return np.stack([red, green, blue], axis=1).astype(np.float32)


def _gray(entries: int = 256) -> np.ndarray:
    return np.repeat(np.linspace(0.0, 1.0, entries, dtype=np.float32)[:, None], 3, axis=1)


COLORMAPS: dict[str, np.ndarray] = {
    "pet": _from_hex(_PET_HEX),
    "spect": _from_hex(_SPECT_HEX),
    "hot": _hot(),
    "gray": _gray(),
}
for _table in COLORMAPS.values():
    _table.flags.writeable = False

# the map each functional modality is shown with by default
DEFAULT_COLORMAP = {"PET": "pet", "PT": "pet", "SPECT": "spect", "NM": "spect"}


def colormap_table(name: str) -> np.ndarray:
    """(256, 3) float32 RGB table of a colour map; a clear error for unknown names."""
    try:
        return COLORMAPS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown colour map {name!r}; choose from {sorted(COLORMAPS)}") from None


def apply_colormap(scalar01: Array, name: str) -> Array:
    """Values in [0, 1] (any shape, clipped) -> RGB (..., 3) in [0, 1], same array type and device."""
    table = colormap_table(name)
    last = len(table) - 1
    if isinstance(scalar01, torch.Tensor):
        lut = torch.tensor(table, device=scalar01.device)
        position = scalar01.detach().float().clamp(0.0, 1.0) * last
        low = position.floor().long().clamp(max=last - 1)
        frac = (position - low)[..., None]
        return lut[low] * (1 - frac) + lut[low + 1] * frac
    position = np.clip(np.asarray(scalar01, dtype=np.float32), 0.0, 1.0) * last
    low = np.minimum(np.floor(position).astype(np.int64), last - 1)
    frac = (position - low)[..., None]
    return (table[low] * (1 - frac) + table[low + 1] * frac).astype(np.float32)
