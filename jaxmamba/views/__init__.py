"""Everything a person looks at: figures, the explorer's protocol, server, widget and offline page.

``plots`` (matplotlib views: patch view, class-token view, overviews, orders side by side),
``scatter_plot`` (the scatterplot of a block's patches), ``figures``
(a study's static PNGs), ``protocol`` (the questions a view asks of a study, answered the same way
over HTTP and widget messages), ``server`` (``jaxmamba serve``), ``widget`` (``jaxmamba.show``),
``export`` (the offline single-file explorer; ``encoding``: how it stores maps) and ``web/``
(the page and its script).
``scales`` holds the colour scales ``plots`` draws with (norms, ticks, labels, underlays).

May import every layer below: :mod:`jaxmamba.study` (what is shown is read from a study folder),
:mod:`jaxmamba.attention`, :mod:`jaxmamba.orders`, :mod:`jaxmamba.storage`, :mod:`jaxmamba.errors`.
Nothing below imports the views.
"""
