"""The weights builders' tables: each model type is built in one module."""

from kvcalc.sources import config_weights


def test_each_type_is_built_in_one_module():
    modules = [("config_weights", set(config_weights.BUILDERS_OWN) | set(config_weights.DECODERS_OWN))]
    modules += [(m.__name__, set(m.DECODERS) | set(m.BUILDERS)) for m in config_weights.FAMILY_MODULES]
    seen: dict[str, str] = {}
    for owner, types in modules:
        for model_type in types:
            assert model_type not in seen, f"{model_type} is built in {seen[model_type]} and {owner}"
            seen[model_type] = owner
    assert not set(seen) & set(config_weights.NOT_DERIVED), "a type both built and said not derived"
    owners = [set(config_weights.NOT_DERIVED_OWN)] + [set(m.NOT_DERIVED) for m in config_weights.FAMILY_MODULES]
    assert sum(len(o) for o in owners) == len(set().union(*owners)), "a type said not derived twice"
