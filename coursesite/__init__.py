"""The course as a static site: the lessons and solutions the suite executed, with their real
outputs, the labs as exercises, and the README as the reference.

    python -m coursesite                 # from test-artifacts/notebooks/ into build/site/
    make site                            # the same; executes the notebooks first if none are

Built with nbconvert and a template of our own (``templates/course``, on nbconvert's ``lab``
template): nbconvert is already a dependency, renders a notebook exactly as JupyterLab shows it,
and its template blocks let every remote script go (require.js, MathJax, the widget manager) and
Mermaid come from the site itself (:mod:`coursesite.assets`). Charts are SVG images, drawn when
the suite executed the notebooks (``KAFKA_LAB_CHARTS=static``, lab_env/display.py). Nothing on
the site is loaded from another host.
"""
