"""bdev's manual pages, generated from the click command definitions (section 1), the
installed backends and limits (section 5) and the concept texts (section 7), in English and
Japanese.  ``python -m bdev.manuals install`` puts them where ``man`` finds them."""
