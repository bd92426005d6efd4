"""The studio on Ray Serve: the deployment (`deployment`), how it is deployed (`options`, `cluster`)
and the engine the page uses to reach it (`client.RayStudio`). Ray is imported only when used."""
