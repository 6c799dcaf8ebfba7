"""Registration helpers.

mmquerymeld registers its modules into mmdet's registries (scope ``mmdet``), as mmdet's own
``projects/`` do; the README's architecture section says why.
"""
from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import mmdet's and mmquerymeld's modules so that they are in the registries.

    Args:
        init_default_scope: If True and no ``mmdet`` default scope is current, create one, so
            unprefixed type names resolve in mmdet's registries, where mmquerymeld's modules live.
    """
    import mmdet.datasets  # noqa: F401
    import mmdet.engine  # noqa: F401
    import mmdet.evaluation  # noqa: F401
    import mmdet.models  # noqa: F401
    import mmdet.visualization  # noqa: F401

    import mmquerymeld.datasets  # noqa: F401
    import mmquerymeld.evaluation  # noqa: F401
    import mmquerymeld.models  # noqa: F401

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is None or current.scope_name != 'mmdet':
        DefaultScope.get_instance(f'mmquerymeld-{id(object())}', scope_name='mmdet')
